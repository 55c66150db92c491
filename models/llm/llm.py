"""LLMs served by Xinference: chat (`/v1/chat/completions`) and generate (`/v1/completions`)."""

import json
from collections.abc import Generator, Iterable, Iterator

from dify_plugin import LargeLanguageModel
from dify_plugin.entities import I18nObject
from dify_plugin.entities.model import (
    AIModelEntity,
    ModelFeature,
    ModelPropertyKey,
    ModelType,
    ParameterRule,
    ParameterType,
)
from dify_plugin.entities.model.llm import LLMMode, LLMResult, LLMResultChunk, LLMResultChunkDelta
from dify_plugin.entities.model.message import (
    AssistantPromptMessage,
    AudioPromptMessageContent,
    ImagePromptMessageContent,
    PromptMessage,
    PromptMessageTool,
    TextPromptMessageContent,
    ToolPromptMessage,
    VideoPromptMessageContent,
)
from dify_plugin.errors.model import InvokeBadRequestError, InvokeError, InvokeServerUnavailableError

from models.common.credentials import ServerSettings
from models.common.http import XinferenceClient
from models.common.metadata import ModelDescription
from models.common.model_base import XinferenceModel, customizable_schema
from models.common.tokens import estimate_tokens
from models.common.wire import CompletionAnswer, FunctionCall, Message, ToolCall, Usage, parse_wire

DEFAULT_CONTEXT_LENGTH = 2048
# Sampling parameters Xinference takes under the same name as Dify's parameter rules.
_PASSED_THROUGH = (
    "temperature",
    "top_p",
    "top_k",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "max_tokens",
    "seed",
)
_TOKENS_PER_MESSAGE = 4


class XinferenceLargeLanguageModel(XinferenceModel, LargeLanguageModel):
    xinference_model_type = "llm"
    dify_type_name = "LLM"

    def _invoke(
        self,
        model: str,
        credentials: dict,
        prompt_messages: list[PromptMessage],
        model_parameters: dict,
        tools: list[PromptMessageTool] | None = None,
        stop: list[str] | None = None,
        stream: bool = True,
        user: str | None = None,
    ) -> LLMResult | Generator[LLMResultChunk, None, None]:
        settings = self.settings_of(credentials)
        description = self.describe_checked(settings)
        client = XinferenceClient(settings)
        chat = _mode_of(description) is LLMMode.CHAT
        if chat:
            path = "/v1/chat/completions"
            body = {"model": settings.model_uid, "messages": [_chat_message(m) for m in prompt_messages]}
            if tools:
                body["tools"] = [_tool_definition(tool) for tool in tools]
        else:
            path = "/v1/completions"
            body = {"model": settings.model_uid, "prompt": _completion_prompt(prompt_messages)}
        body.update(_sampling_fields(model_parameters, description, chat))
        if stop:
            body["stop"] = stop

        call = _Call(self, model, credentials, prompt_messages, tools)
        if not stream:
            return call.result(parse_wire(CompletionAnswer, client.post_json(path, body)))
        body["stream"] = True
        if chat:
            body["stream_options"] = {"include_usage": True}
        return call.chunks(client.post_events(path, body))

    def get_num_tokens(
        self,
        model: str,
        credentials: dict,
        prompt_messages: list[PromptMessage],
        tools: list[PromptMessageTool] | None = None,
    ) -> int:
        return _estimate_prompt_tokens(prompt_messages, tools)

    def validate_credentials(self, model: str, credentials: dict) -> None:
        self.validate_with_probe(credentials, _probe_with_tiny_request)

    def get_customizable_model_schema(self, model: str, credentials: dict) -> AIModelEntity:
        description = self.describe_checked(self.settings_of(credentials))
        # The SDK asks for the schema three times per invoke (parameter check, prompt and
        # completion price); the SDK's in-place template filling is idempotent.
        return description.derived(("llm-schema", model), lambda: _schema_of(model, description))

    # `_invoke_error_mapping` and `_transform_invoke_error` come from XinferenceModel:
    # one table for every model type (models/common/errors.py).


# ---- what the server's description implies ---------------------------------------------


def _schema_of(model: str, description: ModelDescription) -> AIModelEntity:
    context_length = description.context_length or DEFAULT_CONTEXT_LENGTH
    return customizable_schema(
        model,
        ModelType.LLM,
        {
            ModelPropertyKey.MODE: _mode_of(description).value,
            ModelPropertyKey.CONTEXT_SIZE: context_length,
        },
        features=_features_of(description),
        parameter_rules=_parameter_rules(description, context_length),
    )


def _mode_of(description: ModelDescription) -> LLMMode:
    if description.has("generate") and not description.has("chat"):
        return LLMMode.COMPLETION
    return LLMMode.CHAT


def _features_of(description: ModelDescription) -> list[ModelFeature]:
    if _mode_of(description) is LLMMode.COMPLETION:
        return []
    features = [ModelFeature.STRUCTURED_OUTPUT]
    if description.has("tools"):
        features += [
            ModelFeature.TOOL_CALL,
            ModelFeature.MULTI_TOOL_CALL,
            ModelFeature.STREAM_TOOL_CALL,
            ModelFeature.AGENT_THOUGHT,
        ]
    if description.has("vision") or description.has("omni"):
        features.append(ModelFeature.VISION)
    if description.has("audio") or description.has("omni"):
        features.append(ModelFeature.AUDIO)
    if description.has("omni"):
        features.append(ModelFeature.VIDEO)
    return features


def _label(en_us: str, zh_hans: str) -> I18nObject:
    return I18nObject(en_US=en_us, zh_Hans=zh_hans)


def _parameter_rules(description: ModelDescription, context_length: int) -> list[ParameterRule]:
    rules = [
        ParameterRule(name="temperature", use_template="temperature", max=2.0),
        ParameterRule(name="top_p", use_template="top_p"),
        ParameterRule(name="top_k", use_template="top_k", min=1, max=1000),
        ParameterRule(name="presence_penalty", use_template="presence_penalty", min=-2.0, max=2.0),
        ParameterRule(name="frequency_penalty", use_template="frequency_penalty", min=-2.0, max=2.0),
        ParameterRule(
            name="repetition_penalty",
            label=_label("Repetition penalty", "重复惩罚"),
            help=_label(
                "Values above 1 discourage repeating tokens; 1 means no penalty.",
                "大于 1 的值会抑制重复；1 表示不惩罚。",
            ),
            type=ParameterType.FLOAT,
            min=0.1,
            max=2.0,
            default=1.0,
            precision=2,
        ),
        ParameterRule(
            name="max_tokens",
            use_template="max_tokens",
            min=1,
            max=context_length,
            default=min(512, context_length),
        ),
        ParameterRule(
            name="seed",
            label=_label("Seed", "随机种子"),
            help=_label(
                "The same seed and parameters give the same answer where the engine supports it.",
                "相同的种子和参数在引擎支持时产生相同的回答。",
            ),
            type=ParameterType.INT,
        ),
    ]
    if _mode_of(description) is LLMMode.CHAT:
        rules += [
            ParameterRule(
                name="response_format",
                label=_label("Response format", "回复格式"),
                help=_label(
                    "json_object asks for JSON; json_schema for JSON matching the JSON schema below "
                    "(Xinference 1.1 and newer).",
                    "json_object 要求输出 JSON；json_schema 要求输出符合下方 JSON Schema 的 JSON（Xinference 1.1 及以上）。",
                ),
                type=ParameterType.STRING,
                options=["text", "json_object", "json_schema"],
            ),
            ParameterRule(name="json_schema", use_template="json_schema"),
        ]
    if description.has("hybrid"):
        rules.append(
            ParameterRule(
                name="enable_thinking",
                label=_label("Thinking mode", "思考模式"),
                help=_label(
                    "Whether this hybrid reasoning model thinks before it answers.",
                    "该混合推理模型是否在回答前进行思考。",
                ),
                type=ParameterType.BOOLEAN,
                default=True,
            )
        )
    return rules


# ---- the request ----------------------------------------------------------------------------


def _sampling_fields(parameters: dict, description: ModelDescription, chat: bool) -> dict:
    """Only what the user set goes to the server: unset means the model's own default."""
    fields = {name: parameters[name] for name in _PASSED_THROUGH if parameters.get(name) is not None}
    if chat:
        response_format = _response_format(parameters)
        if response_format:
            fields["response_format"] = response_format
    if description.has("hybrid"):
        # The server's default differs by engine, so a hybrid model is always told.
        thinking = parameters.get("enable_thinking")
        fields["chat_template_kwargs"] = {"enable_thinking": True if thinking is None else bool(thinking)}
    return fields


def _response_format(parameters: dict) -> dict | None:
    kind = parameters.get("response_format")
    schema_text = parameters.get("json_schema")
    if schema_text and kind in (None, "json_schema"):
        try:
            schema = json.loads(schema_text) if isinstance(schema_text, str) else schema_text
        except ValueError as exc:
            raise InvokeBadRequestError(f"json_schema is not valid JSON: {exc}") from exc
        if not isinstance(schema, dict):
            raise InvokeBadRequestError("json_schema must be a JSON object")
        if "schema" not in schema:
            schema = {"name": "response", "schema": schema}
        return {"type": "json_schema", "json_schema": {"name": "response", **schema}}
    if kind == "json_object":
        return {"type": "json_object"}
    return None


def _chat_message(message: PromptMessage) -> dict:
    # Xinference's chat templates know no "developer" role; it means what "system" means.
    role = "system" if message.role.value == "developer" else message.role.value
    wire: dict = {"role": role, "content": _content(message)}
    if isinstance(message, AssistantPromptMessage) and message.tool_calls:
        wire["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.function.name, "arguments": call.function.arguments},
            }
            for call in message.tool_calls
        ]
    if isinstance(message, ToolPromptMessage):
        wire["tool_call_id"] = message.tool_call_id
    return wire


def _content(message: PromptMessage) -> str | list[dict] | None:
    if message.content is None or isinstance(message.content, str):
        return message.content
    parts: list[dict] = []
    for part in message.content:
        if isinstance(part, TextPromptMessageContent):
            parts.append({"type": "text", "text": part.data})
        elif isinstance(part, ImagePromptMessageContent):
            parts.append({"type": "image_url", "image_url": {"url": _inline_url(part)}})
        elif isinstance(part, AudioPromptMessageContent):
            parts.append({"type": "audio_url", "audio_url": {"url": _inline_url(part)}})
        elif isinstance(part, VideoPromptMessageContent):
            parts.append({"type": "video_url", "video_url": {"url": _inline_url(part)}})
        else:
            raise InvokeBadRequestError(f"Xinference chat cannot take {part.type} content")
    return parts


def _inline_url(part: ImagePromptMessageContent | AudioPromptMessageContent | VideoPromptMessageContent) -> str:
    # A data URL when Dify has the bytes: the server fetches http URLs itself, with no timeout.
    if part.base64_data:
        return f"data:{part.mime_type};base64,{part.base64_data}"
    return part.url


def _tool_definition(tool: PromptMessageTool) -> dict:
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters},
    }


def _completion_prompt(messages: list[PromptMessage]) -> str:
    return "\n\n".join(text for text in (m.get_text_content() for m in messages) if text)


def _estimate_prompt_tokens(messages: Iterable[PromptMessage], tools: list[PromptMessageTool] | None) -> int:
    total = 0
    for message in messages:
        total += _TOKENS_PER_MESSAGE + estimate_tokens(message.get_text_content())
        if isinstance(message, AssistantPromptMessage):
            for call in message.tool_calls:
                total += estimate_tokens(call.function.name) + estimate_tokens(call.function.arguments)
    for tool in tools or []:
        total += estimate_tokens(json.dumps(_tool_definition(tool), ensure_ascii=False))
    return total


def _probe_with_tiny_request(settings: ServerSettings, description: ModelDescription) -> None:
    client = XinferenceClient(settings)
    if _mode_of(description) is LLMMode.CHAT:
        answer = client.post_json(
            "/v1/chat/completions",
            {"model": settings.model_uid, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5},
        )
    else:
        answer = client.post_json(
            "/v1/completions", {"model": settings.model_uid, "prompt": "Hi", "max_tokens": 5}
        )
    parse_wire(CompletionAnswer, answer)


# ---- the answer ----------------------------------------------------------------------------


class _Call:
    """Turns one answer, blocking or streamed, into what Dify expects."""

    def __init__(
        self,
        model_class: XinferenceLargeLanguageModel,
        model: str,
        credentials: dict,
        prompt_messages: list[PromptMessage],
        tools: list[PromptMessageTool] | None,
    ) -> None:
        self.model_class = model_class
        self.model = model
        self.credentials = credentials
        self.prompt_messages = prompt_messages
        self.tools = tools

    def result(self, answer: CompletionAnswer) -> LLMResult:
        if not answer.choices:
            raise InvokeServerUnavailableError("Xinference answered without any choice")
        choice = answer.choices[0]
        message = choice.message or Message(content=choice.text)
        inline_calls = _InlineToolCalls(enabled=bool(self.tools) and not message.tool_calls)
        text = inline_calls.feed(message.content or "") + inline_calls.close()
        if message.reasoning_content:
            text = f"<think>\n{message.reasoning_content}\n</think>{text}"
        tool_calls = _tool_calls_for_dify(_merge_tool_calls(message.tool_calls or []) + inline_calls.calls)
        return LLMResult(
            model=self.model,
            prompt_messages=[],
            message=AssistantPromptMessage(content=text, tool_calls=tool_calls),
            usage=self._usage(answer.usage, text, tool_calls),
        )

    def chunks(self, events: Iterator[dict]) -> Generator[LLMResultChunk, None, None]:
        # The SDK maps errors raised by `_invoke`, not by the generator it returns.
        try:
            yield from self._chunks(events)
        except InvokeError:
            raise
        except Exception as exc:
            raise self.model_class._transform_invoke_error(exc) from exc

    def _chunks(self, events: Iterator[dict]) -> Generator[LLMResultChunk, None, None]:
        reasoning = _ReasoningWrapper()
        inline_calls = _InlineToolCalls(enabled=bool(self.tools))
        pending_calls: list[ToolCall] = []
        text_parts: list[str] = []
        usage: Usage | None = None
        finish_reason: str | None = None
        index = 0
        for event in events:
            answer = parse_wire(CompletionAnswer, event)
            if answer.usage is not None:
                usage = answer.usage
            for choice in answer.choices[:1]:
                finish_reason = finish_reason or choice.finish_reason
                delta = choice.delta or Message(content=choice.text)
                if delta.tool_calls:
                    pending_calls.extend(delta.tool_calls)
                text = inline_calls.feed(reasoning.feed(delta))
                if text:
                    text_parts.append(text)
                    yield self._chunk(index, AssistantPromptMessage(content=text))
                    index += 1
        if finish_reason is None:
            raise InvokeServerUnavailableError(
                "Xinference's stream ended before the answer was complete (no finish_reason)"
            )
        closing_text = inline_calls.feed(reasoning.close()) + inline_calls.close()
        text_parts.append(closing_text)
        tool_calls = _tool_calls_for_dify(_merge_tool_calls(pending_calls) + inline_calls.calls)
        if inline_calls.calls and finish_reason == "stop":
            finish_reason = "tool_calls"
        yield self._chunk(
            index,
            AssistantPromptMessage(content=closing_text, tool_calls=tool_calls),
            usage=self._usage(usage, "".join(text_parts), tool_calls),
            finish_reason=finish_reason,
        )

    def _chunk(self, index: int, message: AssistantPromptMessage, **final) -> LLMResultChunk:
        return LLMResultChunk(
            model=self.model,
            prompt_messages=[],
            delta=LLMResultChunkDelta(index=index, message=message, **final),
        )

    def _usage(self, usage: Usage | None, text: str, tool_calls: list) -> object:
        if usage is not None and usage.known:
            prompt_tokens, completion_tokens = usage.prompt_tokens, usage.completion_tokens
        else:
            prompt_tokens = _estimate_prompt_tokens(self.prompt_messages, self.tools)
            completion_tokens = estimate_tokens(text) + sum(
                estimate_tokens(call.function.arguments) for call in tool_calls
            )
        return self.model_class._calc_response_usage(
            self.model, self.credentials, prompt_tokens, completion_tokens
        )


class _ReasoningWrapper:
    """Puts `reasoning_content` into content as Dify's `<think>\\n…\\n</think>` wrapping.

    Inline `<think>` tags (the server's default) already have that form and pass through.
    """

    def __init__(self) -> None:
        self.thinking = False

    def feed(self, delta: Message) -> str:
        text = ""
        if delta.reasoning_content:
            text = delta.reasoning_content if self.thinking else "<think>\n" + delta.reasoning_content
            self.thinking = True
        if self.thinking and (delta.content or delta.tool_calls):
            text += "\n</think>"
            self.thinking = False
        return text + (delta.content or "")

    def close(self) -> str:
        if self.thinking:
            self.thinking = False
            return "\n</think>"
        return ""


class _InlineToolCalls:
    """Tool calls a server left in the text as `<tool_call>{"name": …, "arguments": …}</tool_call>`.

    Xinference's transformers engine (4.1.0) parses tool calls only in blocking answers:
    streamed, the model's raw tool-call blocks arrive as content. When tools were offered,
    such blocks are held back from the text and become real tool calls.
    """

    OPEN, CLOSE = "<tool_call>", "</tool_call>"

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.held = ""
        self.calls: list[ToolCall] = []

    def feed(self, text: str) -> str:
        if not self.enabled:
            return text
        self.held += text
        released: list[str] = []
        while True:
            start = self.held.find(self.OPEN)
            if start < 0:
                keep = _partial_prefix_length(self.held, self.OPEN)
                released.append(self.held[: len(self.held) - keep])
                self.held = self.held[len(self.held) - keep :]
                return "".join(released)
            released.append(self.held[:start])
            end = self.held.find(self.CLOSE, start)
            if end < 0:
                self.held = self.held[start:]
                return "".join(released)
            block = self.held[start + len(self.OPEN) : end]
            self.held = self.held[end + len(self.CLOSE) :]
            call = _tool_call_from_block(block)
            if call is None:
                released.append(self.OPEN + block + self.CLOSE)
            else:
                self.calls.append(call)

    def close(self) -> str:
        """Whatever is still held back: an unfinished block is the model's text after all."""
        text, self.held = self.held, ""
        return text


def _partial_prefix_length(text: str, marker: str) -> int:
    """How many characters at the end of `text` could be the start of `marker`."""
    for length in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:length]):
            return length
    return 0


def _tool_call_from_block(block: str) -> ToolCall | None:
    try:
        parsed = json.loads(block)
    except ValueError:
        return None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("name"), str):
        return None
    arguments = parsed.get("arguments", {})
    return ToolCall(
        function=FunctionCall(
            name=parsed["name"],
            arguments=arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False),
        )
    )


def _merge_tool_calls(fragments: list[ToolCall]) -> list[ToolCall]:
    """Streamed fragments joined per `index`; calls without an index (0.16/1.x) are whole."""
    calls: list[ToolCall] = []
    by_index: dict[int, ToolCall] = {}
    for fragment in fragments:
        if fragment.index is None:
            calls.append(fragment.model_copy(deep=True))
            continue
        call = by_index.get(fragment.index)
        if call is None:
            call = by_index[fragment.index] = ToolCall(index=fragment.index)
            call.function.arguments = ""
            calls.append(call)
        call.id = call.id or fragment.id
        call.function.name = call.function.name or fragment.function.name
        call.function.arguments = (call.function.arguments or "") + (fragment.function.arguments or "")
    return calls


def _tool_calls_for_dify(calls: list[ToolCall]) -> list[AssistantPromptMessage.ToolCall]:
    # 0.16 gave every call of an answer the same id; Dify matches results by id.
    seen: set[str] = set()
    result = []
    for position, call in enumerate(calls):
        call_id = call.id or f"call_{position}"
        if call_id in seen:
            call_id = f"{call_id}_{position}"
        seen.add(call_id)
        result.append(
            AssistantPromptMessage.ToolCall(
                id=call_id,
                type="function",
                function=AssistantPromptMessage.ToolCall.ToolCallFunction(
                    name=call.function.name or "", arguments=call.function.arguments or "{}"
                ),
            )
        )
    return result

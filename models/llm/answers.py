"""The answer, blocking or streamed, turned into Dify's `LLMResult` / `LLMResultChunk`s."""

import json
from collections.abc import Generator, Iterator

from dify_plugin import LargeLanguageModel
from dify_plugin.entities.model.llm import (
    LLMResult,
    LLMResultChunk,
    LLMResultChunkDelta,
)
from dify_plugin.entities.model.message import (
    AssistantPromptMessage,
    PromptMessage,
    PromptMessageTool,
)
from dify_plugin.errors.model import InvokeServerUnavailableError

from models.common.tokens import estimate_tokens
from models.common.wire import (
    CompletionAnswer,
    FunctionCall,
    Message,
    ToolCall,
    Usage,
    parse_wire,
)
from models.llm.request import estimate_prompt_tokens


class AnswerReader:
    """Turns one answer, blocking or streamed, into what Dify expects."""

    def __init__(
        self,
        model_class: LargeLanguageModel,
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
            prompt_tokens = estimate_prompt_tokens(self.prompt_messages, self.tools)
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

"""The request body: Dify's prompt messages, tools and parameters in Xinference's (OpenAI's) shapes."""

import json
import re
from collections.abc import Iterable

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
from dify_plugin.errors.model import InvokeBadRequestError

from models.common.metadata import ModelDescription
from models.common.tokens import estimate_tokens
from models.llm.families import TemplateNeeds, reasoning_effort_of

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
_THINK_BLOCK = re.compile(r"<think>(.*?)</think>", re.DOTALL)


def sampling_fields(parameters: dict, description: ModelDescription, chat: bool) -> dict:
    """Only what the user set goes to the server: unset means the model's own default."""
    fields = {name: parameters[name] for name in _PASSED_THROUGH if parameters.get(name) is not None}
    if chat:
        response_format = _response_format(parameters)
        if response_format:
            fields["response_format"] = response_format
    template_kwargs = {}
    if description.has("hybrid"):
        # The server's default differs by engine, so a hybrid model is always told.
        thinking = parameters.get("enable_thinking")
        template_kwargs["enable_thinking"] = True if thinking is None else bool(thinking)
    effort = reasoning_effort_of(description)
    if effort and parameters.get("reasoning_effort"):
        if parameters["reasoning_effort"] not in effort.options:
            raise InvokeBadRequestError(
                f"reasoning_effort must be one of {', '.join(effort.options)} for this model, "
                f"got {parameters['reasoning_effort']!r}"
            )
        template_kwargs["reasoning_effort"] = parameters["reasoning_effort"]
    if template_kwargs:
        fields["chat_template_kwargs"] = template_kwargs
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


_NO_SPECIAL_NEEDS = TemplateNeeds()


def chat_messages(
    messages: list[PromptMessage], needs: TemplateNeeds = _NO_SPECIAL_NEEDS, tools_as_text: bool = False
) -> list[dict]:
    """Dify's conversation in the shape every family's chat template can render.

    System and developer messages after the first message are merged, in order, into one
    leading system message: several templates refuse them (Xinference's `strict_system_first`
    400, "roles must alternate"), others drop them silently.
    """
    wire = [chat_message(message, needs) for message in messages]
    if tools_as_text:
        wire = tool_turns_as_text(wire)
    wire = _one_leading_system_message(wire)
    if needs.system_in_first_user:
        wire = _system_in_first_user_message(wire)
    return wire


def chat_message(message: PromptMessage, needs: TemplateNeeds = _NO_SPECIAL_NEEDS) -> dict:
    # Xinference's chat templates know no "developer" role; it means what "system" means.
    role = "system" if message.role.value == "developer" else message.role.value
    wire: dict = {"role": role, "content": _content(message)}
    if isinstance(message, AssistantPromptMessage):
        answer, reasoning = _split_reasoning(wire["content"])
        wire["content"] = answer
        if reasoning:
            # Templates that want earlier reasoning read this field (and decide which turns keep it).
            wire["reasoning_content"] = reasoning
        if message.tool_calls:
            wire["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {
                        "name": call.function.name,
                        "arguments": _arguments(call.function.arguments, needs.arguments_as_objects),
                    },
                }
                for call in message.tool_calls
            ]
    if isinstance(message, ToolPromptMessage):
        wire["tool_call_id"] = message.tool_call_id
        if message.name:
            # Qwen1.5/Qwen2 templates raise without it (dify#11010).
            wire["name"] = message.name
    return wire


def tool_turns_as_text(wire: list[dict]) -> list[dict]:
    """Tool calls and results as plain turns, for a model that is given no tools."""
    names = {
        call["id"]: call["function"]["name"] for message in wire for call in message.get("tool_calls") or []
    }
    plain = []
    for message in wire:
        if message.get("tool_calls"):
            calls = "\n".join(
                f"Called {call['function']['name']}({_arguments_text(call['function']['arguments'])})"
                for call in message["tool_calls"]
            )
            text = _text_of(message["content"])
            plain.append({"role": "assistant", "content": f"{text}\n{calls}" if text else calls})
        elif message["role"] == "tool":
            name = message.get("name") or names.get(message.get("tool_call_id"), "The tool")
            plain.append({"role": "user", "content": f"{name} returned: {_text_of(message['content'])}"})
        else:
            plain.append(message)
    return plain


def _one_leading_system_message(wire: list[dict]) -> list[dict]:
    instructions = [message for message in wire if message["role"] == "system"]
    if len(instructions) < 2 and (not instructions or wire[0] is instructions[0]):
        return wire
    merged = "\n\n".join(_text_of(message["content"]) for message in instructions)
    return [{"role": "system", "content": merged}, *(message for message in wire if message["role"] != "system")]


def _system_in_first_user_message(wire: list[dict]) -> list[dict]:
    first_user = next((i for i, message in enumerate(wire) if message["role"] == "user"), None)
    if not wire or wire[0]["role"] != "system" or first_user is None:
        return wire
    instructions = _text_of(wire[0]["content"])
    user = dict(wire[first_user])
    if isinstance(user["content"], list):
        user["content"] = [{"type": "text", "text": instructions}, *user["content"]]
    else:
        user["content"] = f"{instructions}\n\n{user['content'] or ''}"
    return [*wire[1:first_user], user, *wire[first_user + 1 :]]


def _arguments(arguments: str, as_object: bool) -> str | dict:
    if not as_object:
        return arguments
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return arguments
    return parsed if isinstance(parsed, dict) else arguments


def _arguments_text(arguments: str | dict) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)


def _split_reasoning(content: str | list[dict] | None) -> tuple[str | list[dict] | None, str]:
    """Dify keeps an answer's `<think>…</think>` in its text; the reasoning is not the answer."""
    if not isinstance(content, str) or "</think>" not in content:
        return content, ""
    thoughts = _THINK_BLOCK.findall(content)
    answer = _THINK_BLOCK.sub("", content)
    if "</think>" in answer:  # a model that starts thinking unprompted never sends the opening tag
        thought, answer = answer.rsplit("</think>", 1)
        thoughts.insert(0, thought)
    return answer.strip(), "\n\n".join(thought.strip() for thought in thoughts if thought.strip())


def _text_of(content: str | list[dict] | None) -> str:
    if isinstance(content, list):
        return "\n".join(part["text"] for part in content if part.get("type") == "text")
    return content or ""


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


def tool_definition(tool: PromptMessageTool) -> dict:
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters},
    }


def completion_prompt(messages: list[PromptMessage]) -> str:
    return "\n\n".join(text for text in (m.get_text_content() for m in messages) if text)


def estimate_prompt_tokens(messages: Iterable[PromptMessage], tools: list[PromptMessageTool] | None) -> int:
    total = 0
    for message in messages:
        total += _TOKENS_PER_MESSAGE + estimate_tokens(message.get_text_content())
        if isinstance(message, AssistantPromptMessage):
            for call in message.tool_calls:
                total += estimate_tokens(call.function.name) + estimate_tokens(call.function.arguments)
    for tool in tools or []:
        total += estimate_tokens(json.dumps(tool_definition(tool), ensure_ascii=False))
    return total

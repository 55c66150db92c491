"""Streamed tool calls where the server refuses them: the answer fetched blocking, handed over as chunks.

Dify's function-calling agent streams whenever the model declares `stream-tool-call`.
Xinference 1.10 to 2.1 refuse `stream: true` with `tools` (400 "Streaming support for
tool calls is available only when using Qwen models with vLLM backend or GLM4-chat
models without vLLM backend.") unless the model is one of those two pairs; 2.2.0 dropped
the check. Neither the version nor the description says beforehand whether a model is
refused (the description names the engine only from 3.x, and a vLLM Qwen on 1.x streams
tool calls fine), so the refusal itself (`Reason.STREAMED_TOOLS_REFUSED`) is the signal:
it is remembered per server and model as long as what the plugin learns (the model may be
relaunched under the same UID on another engine; models/common/memory.py), and that call
and the following ones go blocking and reach Dify as chunks. A server that streams tool
calls never sees an extra request; a refusing one sees one rejected request (answered
before any inference) per model and per memory lifetime.
"""

from collections.abc import Generator

from dify_plugin.entities.model.llm import LLMResult, LLMResultChunk, LLMResultChunkDelta
from dify_plugin.entities.model.message import AssistantPromptMessage

from models.common.errors import Reason, XinferenceError
from models.common.http import XinferenceClient
from models.common.memory import Memory
from models.common.wire import CompletionAnswer, parse_wire
from models.llm.answers import AnswerReader

# (server URL, model UID) -> True
_streamed_tool_refusals: Memory[tuple[str, str], bool] = Memory()


def streamed_answer(
    client: XinferenceClient, path: str, body: dict, reader: AnswerReader
) -> Generator[LLMResultChunk, None, None]:
    """The chunks of a streamed call (`body` asks for a stream), whatever the server allows.

    HTTP errors raise here, before the first chunk, as from a plain stream.
    """
    key = (client.settings.base_url, client.settings.model_uid)
    if body.get("tools") and key in _streamed_tool_refusals:
        return _blocking_as_chunks(client, path, body, reader)
    try:
        events = client.post_events(path, body)
    except XinferenceError as error:
        if not (body.get("tools") and error.reason is Reason.STREAMED_TOOLS_REFUSED):
            raise
        _streamed_tool_refusals.put(key, True)
        return _blocking_as_chunks(client, path, body, reader)
    return reader.chunks(events)


def _blocking_as_chunks(
    client: XinferenceClient, path: str, body: dict, reader: AnswerReader
) -> Generator[LLMResultChunk, None, None]:
    blocking_body = {name: value for name, value in body.items() if name not in ("stream", "stream_options")}
    answer = parse_wire(CompletionAnswer, client.post_json(path, blocking_body))
    result = reader.result(answer)
    finish_reason = answer.choices[0].finish_reason if answer.choices else None
    if result.message.tool_calls and finish_reason in (None, "stop"):
        finish_reason = "tool_calls"
    return _as_chunks(result, finish_reason or "stop")


def _as_chunks(result: LLMResult, finish_reason: str) -> Generator[LLMResultChunk, None, None]:
    """The text first (as a stream would show it), then the tool calls, usage and finish reason."""
    index = 0
    text = result.message.content
    if isinstance(text, str) and text:
        yield _chunk(result, index, AssistantPromptMessage(content=text))
        index += 1
    closing = AssistantPromptMessage(content="", tool_calls=result.message.tool_calls)
    yield _chunk(result, index, closing, usage=result.usage, finish_reason=finish_reason)


def _chunk(result: LLMResult, index: int, message: AssistantPromptMessage, **final) -> LLMResultChunk:
    return LLMResultChunk(
        model=result.model,
        prompt_messages=[],
        delta=LLMResultChunkDelta(index=index, message=message, **final),
    )


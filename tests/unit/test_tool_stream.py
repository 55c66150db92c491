"""Streamed tool calls on servers that refuse them (Xinference 1.10 to 2.1 without vLLM Qwen / GLM4).

Dify's function-calling agent always streams when the model has tools; these servers answer
that with a 400. The plugin then asks blocking and hands Dify the answer as chunks.
"""

import json
import time

import pytest
import responses
from dify_plugin.entities.model.message import PromptMessageTool, UserPromptMessage
from dify_plugin.errors.model import InvokeBadRequestError, InvokeServerUnavailableError

from models.common import memory
from models.llm.llm import XinferenceLargeLanguageModel
from tests.unit.xinference import SERVER, UID, chat_answer, chunk, credentials, describe_llm, sse

DESCRIBE = f"{SERVER}/v1/models/{UID}"
CHAT = f"{SERVER}/v1/chat/completions"
# Xinference 1.17.1's words (also 1.10 to 2.1; recorded in tests/fixtures/xinference-1.17.1/).
REFUSAL = {
    "detail": "Streaming support for tool calls is available only when using Qwen models "
    "with vLLM backend or GLM4-chat models without vLLM backend."
}
WEATHER_TOOL = PromptMessageTool(
    name="get_weather",
    description="Weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
PARIS_CALL = [
    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
]


def stream_with_tools(uid: str = UID, content: str = "What is the weather in Paris?") -> list:
    model = XinferenceLargeLanguageModel(model_schemas=[])
    return list(
        model.invoke(
            "m", credentials(model_uid=uid), [UserPromptMessage(content=content)], {}, tools=[WEATHER_TOOL], stream=True
        )
    )


def chat_bodies() -> list[dict]:
    return [json.loads(call.request.body) for call in responses.calls if call.request.url == CHAT]


@responses.activate
def test_refused_stream_is_answered_blocking_and_handed_over_as_chunks():
    responses.get(DESCRIBE, json=describe_llm())
    responses.post(CHAT, status=400, json=REFUSAL)
    responses.post(CHAT, json=chat_answer(content="", tool_calls=PARIS_CALL, finish_reason="tool_calls", usage=(40, 9)))

    chunks = stream_with_tools()

    last = chunks[-1].delta
    [call] = last.message.tool_calls
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == ("call_1", "get_weather", {"city": "Paris"})
    assert last.finish_reason == "tool_calls"
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (40, 9)
    first, second = chat_bodies()
    assert first["stream"] is True
    assert "stream" not in second and "stream_options" not in second
    assert second["tools"] == first["tools"] and second["messages"] == first["messages"]


@responses.activate
def test_the_refusal_is_remembered_per_server_and_model():
    responses.get(DESCRIBE, json=describe_llm())
    responses.get(f"{SERVER}/v1/models/other-chat", json=describe_llm())
    responses.post(CHAT, status=400, json=REFUSAL)
    answer = chat_answer(content="", tool_calls=PARIS_CALL, finish_reason="tool_calls")
    responses.post(CHAT, json=answer)
    responses.post(CHAT, json=answer)
    responses.post(CHAT, body=sse(chunk({"content": "streamed"}), chunk({}, finish_reason="stop")))

    stream_with_tools()
    stream_with_tools()  # the same model: straight to blocking, no second refusal
    assert [body.get("stream", False) for body in chat_bodies()] == [True, False, False]

    other = stream_with_tools(uid="other-chat")  # another model on that server may stream
    assert chat_bodies()[-1]["stream"] is True
    assert "".join(c.delta.message.content for c in other) == "streamed"


@responses.activate
def test_a_remembered_refusal_is_forgotten_after_a_while(monkeypatch):
    responses.get(DESCRIBE, json=describe_llm())
    responses.post(CHAT, status=400, json=REFUSAL)
    responses.post(CHAT, json=chat_answer(content="", tool_calls=PARIS_CALL, finish_reason="tool_calls"))
    responses.post(CHAT, body=sse(chunk({"content": "relaunched on vLLM"}), chunk({}, finish_reason="stop")))

    stream_with_tools()
    later = time.monotonic() + memory.LEARNT_FOR
    monkeypatch.setattr(memory.time, "monotonic", lambda: later)
    stream_with_tools()  # e.g. the model was relaunched on an engine that streams tool calls
    assert [body.get("stream", False) for body in chat_bodies()] == [True, False, True]


@responses.activate
def test_servers_that_stream_tool_calls_get_exactly_one_request():
    responses.get(DESCRIBE, json=describe_llm())
    responses.post(
        CHAT,
        body=sse(chunk({"tool_calls": [{"index": 0, **PARIS_CALL[0]}]}), chunk({}, finish_reason="tool_calls")),
    )
    chunks = stream_with_tools()
    assert chunks[-1].delta.message.tool_calls[0].function.name == "get_weather"
    assert [call.request.method for call in responses.calls] == ["GET", "POST"]  # describe, the stream


@responses.activate
def test_text_before_the_tool_call_comes_first_and_a_plain_answer_keeps_its_finish_reason():
    responses.get(DESCRIBE, json=describe_llm())
    responses.post(CHAT, status=400, json=REFUSAL)
    responses.post(CHAT, json=chat_answer(content="Let me check.", tool_calls=PARIS_CALL, finish_reason="stop"))
    responses.post(CHAT, json=chat_answer(content="It is sunny.", finish_reason="length"))

    with_call = stream_with_tools()
    assert [c.delta.message.content for c in with_call] == ["Let me check.", ""]
    assert with_call[-1].delta.finish_reason == "tool_calls"
    assert with_call[0].delta.message.tool_calls == []

    plain = stream_with_tools()
    assert "".join(c.delta.message.content for c in plain) == "It is sunny."
    assert plain[-1].delta.message.tool_calls == []
    assert plain[-1].delta.finish_reason == "length"


@responses.activate
def test_tool_call_text_in_the_blocking_answer_still_becomes_a_tool_call():
    responses.get(DESCRIBE, json=describe_llm())
    responses.post(CHAT, status=400, json=REFUSAL)
    text = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    responses.post(CHAT, json=chat_answer(content=text, finish_reason="stop"))
    last = stream_with_tools()[-1].delta
    assert json.loads(last.message.tool_calls[0].function.arguments) == {"city": "Paris"}
    assert last.finish_reason == "tool_calls"


@responses.activate
def test_other_bad_requests_reach_dify_with_the_servers_words_and_are_not_retried():
    responses.get(DESCRIBE, json=describe_llm())
    responses.post(CHAT, status=400, json={"detail": "Only ['qwen2.5-instruct'] support tool calls"})
    with pytest.raises(InvokeBadRequestError, match="support tool calls"):
        stream_with_tools()
    assert len(chat_bodies()) == 1


@responses.activate
def test_a_failing_blocking_retry_raises_the_servers_error():
    responses.get(DESCRIBE, json=describe_llm())
    responses.post(CHAT, status=400, json=REFUSAL)
    responses.post(CHAT, status=500, json={"detail": "CUDA out of memory"})
    with pytest.raises(InvokeServerUnavailableError, match="CUDA out of memory"):
        stream_with_tools()

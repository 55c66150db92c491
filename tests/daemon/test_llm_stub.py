"""LLM calls through the daemon against the stub server: text, usage, tools, reasoning, errors."""

import pytest

from tests.daemon.conftest import stub_credentials
from tests.daemon.stub_models import REASONING, REASONING_UID, TOOL_CALL
from tests.runtime.stub_xinference import ANSWER_PIECES, BROKEN_STREAM_UID, CHAT_UID, MID_STREAM_ERROR, USAGE

HELLO = [{"role": "user", "content": "Say hello."}]
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def llm(call, stub, uid=CHAT_UID, stream=True, tools=(), **parameters):
    return call(
        "llm/invoke", "llm", stub_credentials(stub, uid),
        prompt_messages=HELLO, model_parameters=parameters, tools=list(tools), stop=[], stream=stream,
    )  # fmt: skip


def text_of(chunks) -> str:
    return "".join(chunk["delta"]["message"].get("content") or "" for chunk in chunks)


@pytest.mark.parametrize("stream", [True, False], ids=["streaming", "blocking"])
def test_text_arrives_with_usage_on_the_last_chunk(call, stub, stream):
    result = llm(call, stub, stream=stream)

    assert result.ok, result.error
    assert text_of(result.chunks) == "".join(ANSWER_PIECES)
    if stream:
        assert len(result.chunks) > 1
    usage = result.chunks[-1]["delta"]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (USAGE["prompt_tokens"], USAGE["completion_tokens"])
    if stream:  # a blocking result becomes one chunk in the SDK, without a finish reason
        assert result.chunks[-1]["delta"]["finish_reason"] == "stop"
    assert all(chunk["delta"].get("usage") is None for chunk in result.chunks[:-1])


@pytest.mark.parametrize("stream", [True, False], ids=["streaming", "blocking"])
def test_tool_calls_come_back_as_dify_tool_calls(call, stub, stream):
    result = llm(call, stub, stream=stream, tools=[WEATHER_TOOL])

    assert result.ok, result.error
    calls = [tool for chunk in result.chunks for tool in chunk["delta"]["message"].get("tool_calls") or []]
    assert [(tool["id"], tool["function"]["name"], tool["function"]["arguments"]) for tool in calls] == [
        (TOOL_CALL["id"], "get_weather", TOOL_CALL["function"]["arguments"])
    ]


@pytest.mark.parametrize("stream", [True, False], ids=["streaming", "blocking"])
def test_reasoning_arrives_wrapped_in_think_tags(call, stub, stream):
    result = llm(call, stub, uid=REASONING_UID, stream=stream)

    assert result.ok, result.error
    assert text_of(result.chunks) == f"<think>\n{REASONING}\n</think>Hello!"


def test_an_error_in_the_middle_of_a_stream_arrives_with_dify_class_and_xinference_words(call, stub):
    result = llm(call, stub, uid=BROKEN_STREAM_UID)

    assert result.error_type == "InvokeRateLimitError"
    assert MID_STREAM_ERROR.split(": ", 1)[1] in result.error_message


def test_an_unknown_uid_at_invoke_is_a_bad_request_naming_it(call, stub):
    result = llm(call, stub, uid="no-such-model")

    assert result.error_type == "InvokeBadRequestError"
    assert "no-such-model" in result.error_message


def test_num_tokens(call, stub):
    result = call("llm/num_tokens", "llm", stub_credentials(stub, CHAT_UID), prompt_messages=HELLO, tools=[])

    assert result.ok, result.error
    assert result.chunks[-1]["num_tokens"] > 0

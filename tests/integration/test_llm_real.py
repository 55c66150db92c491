"""The LLM model against a real Xinference server (scripts/testbed), through the SDK's
public entry points, as Dify calls them."""

import json

import pytest
import requests
from dify_plugin.entities.model import ModelFeature, ModelPropertyKey
from dify_plugin.entities.model.message import (
    AssistantPromptMessage,
    PromptMessageTool,
    ToolPromptMessage,
    UserPromptMessage,
)

from models.llm.llm import XinferenceLargeLanguageModel

pytestmark = pytest.mark.integration

WEATHER_TOOL = PromptMessageTool(
    name="get_weather",
    description="Current weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def credentials(testbed: dict, role: str = "chat") -> dict:
    return {"server_url": testbed["url"], "model_uid": testbed["uids"][role], "api_key": testbed.get("api_key") or ""}


def invoke(testbed: dict, messages, stream: bool, role: str = "chat", **kwargs) -> list:
    model = XinferenceLargeLanguageModel(model_schemas=[])
    return list(model.invoke("tiny", credentials(testbed, role), messages, {}, stream=stream, **kwargs))


def text_of(chunks) -> str:
    return "".join(chunk.delta.message.content or "" for chunk in chunks)


def direct(testbed: dict, path: str, body: dict) -> dict:
    headers = {"Authorization": f"Bearer {testbed['api_key']}"} if testbed.get("api_key") else {}
    response = requests.post(testbed["url"] + path, json=body, headers=headers, timeout=60)
    response.raise_for_status()
    return response.json()


def test_blocking_and_streaming_chat_give_the_models_answer(testbed):
    question = [UserPromptMessage(content="Say something.")]
    blocking = invoke(testbed, question, stream=False)
    streamed = invoke(testbed, question, stream=True)
    assert text_of(blocking) == testbed["chat_answer"]
    assert text_of(streamed) == testbed["chat_answer"]
    assert len(streamed) > 2  # it really streamed, in several chunks
    assert streamed[-1].delta.finish_reason == "stop"


def direct_stream_usage(testbed: dict, body: dict) -> dict:
    headers = {"Authorization": f"Bearer {testbed['api_key']}"} if testbed.get("api_key") else {}
    body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    usage = None
    with requests.post(testbed["url"] + "/v1/chat/completions", json=body, headers=headers, stream=True, timeout=60) as response:
        for line in response.iter_lines():
            if line.startswith(b"data: {"):
                usage = json.loads(line[6:]).get("usage") or usage
    return usage


def test_usage_is_the_usage_the_server_reports(testbed):
    question = "How are you?"
    body = {"model": testbed["uids"]["chat"], "messages": [{"role": "user", "content": question}]}
    server_blocking = direct(testbed, "/v1/chat/completions", body)["usage"]
    server_streamed = direct_stream_usage(testbed, body)  # the engine counts the stream's end token too
    [result] = invoke(testbed, [UserPromptMessage(content=question)], stream=False)
    assert result.delta.usage.prompt_tokens == server_blocking["prompt_tokens"]
    assert result.delta.usage.completion_tokens == server_blocking["completion_tokens"]
    streamed = invoke(testbed, [UserPromptMessage(content=question)], stream=True)
    assert streamed[-1].delta.usage.prompt_tokens == server_streamed["prompt_tokens"]
    assert streamed[-1].delta.usage.completion_tokens == server_streamed["completion_tokens"]


def test_blocking_chat_with_tools_returns_the_parsed_tool_call(testbed):
    [result] = invoke(
        testbed, [UserPromptMessage(content="What is the weather in Paris?")], stream=False, tools=[WEATHER_TOOL]
    )
    [call] = result.delta.message.tool_calls
    expected = testbed["tool_answer"]
    assert call.function.name == expected["name"]
    assert json.loads(call.function.arguments) == expected["arguments"]
    assert call.id


def test_streaming_chat_with_tools_returns_the_tool_call_too(testbed):
    # 4.1.0's transformers engine leaves streamed tool calls as text; the plugin parses them.
    chunks = invoke(
        testbed, [UserPromptMessage(content="What is the weather in Paris?")], stream=True, tools=[WEATHER_TOOL]
    )
    [call] = chunks[-1].delta.message.tool_calls
    assert call.function.name == testbed["tool_answer"]["name"]
    assert json.loads(call.function.arguments) == testbed["tool_answer"]["arguments"]
    assert "<tool_call>" not in text_of(chunks)


def test_second_turn_with_the_tool_result(testbed):
    question = UserPromptMessage(content="What is the weather in Paris?")
    [first] = invoke(testbed, [question], stream=False, tools=[WEATHER_TOOL])
    [call] = first.delta.message.tool_calls
    history = [
        question,
        AssistantPromptMessage(content="", tool_calls=[call]),
        ToolPromptMessage(content='{"temperature": 18}', tool_call_id=call.id),
    ]
    [second] = invoke(testbed, history, stream=False, tools=[WEATHER_TOOL])
    assert second.delta.message.content == testbed["tool_result_answer"]
    assert not second.delta.message.tool_calls


def test_completion_mode_on_the_generate_only_model(testbed):
    model = XinferenceLargeLanguageModel(model_schemas=[])
    schema = model.get_customizable_model_schema("tiny", credentials(testbed, "generate"))
    assert schema.model_properties[ModelPropertyKey.MODE] == "completion"
    blocking = invoke(testbed, [UserPromptMessage(content="Once upon")], stream=False, role="generate")
    streamed = invoke(testbed, [UserPromptMessage(content="Once upon")], stream=True, role="generate")
    assert text_of(blocking)
    assert text_of(streamed) == text_of(blocking)  # greedy by default on this model
    assert streamed[-1].delta.finish_reason in ("stop", "length")


def test_schema_shows_the_servers_context_length_and_the_features_its_abilities_imply(testbed):
    described = requests.get(
        f"{testbed['url']}/v1/models/{testbed['uids']['chat']}",
        headers={"Authorization": f"Bearer {testbed['api_key']}"} if testbed.get("api_key") else {},
        timeout=30,
    ).json()
    schema = XinferenceLargeLanguageModel(model_schemas=[]).get_customizable_model_schema(
        "tiny", credentials(testbed)
    )
    assert schema.model_properties[ModelPropertyKey.CONTEXT_SIZE] == described["context_length"]
    assert "tools" in described["model_ability"]
    assert ModelFeature.TOOL_CALL in schema.features
    assert ModelFeature.VISION not in schema.features


def test_num_tokens_is_positive_and_offline(testbed):
    model = XinferenceLargeLanguageModel(model_schemas=[])
    unreachable = {"server_url": "http://127.0.0.1:9", "model_uid": "none"}
    assert model.get_num_tokens("tiny", unreachable, [UserPromptMessage(content="Hello there")]) > 0

"""What differs between Xinference versions, checked on the real server of the testbed's version
(`scripts/test integration --xinference 1.17.1`, or 2.12.0, 3.5.0, 4.1.0)."""

import json

import pytest
import requests
from dify_plugin.entities.model.message import PromptMessageTool, UserPromptMessage

from models.llm.llm import XinferenceLargeLanguageModel

pytestmark = pytest.mark.integration

WEATHER_TOOL = PromptMessageTool(
    name="get_weather",
    description="Current weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def version_of(testbed: dict) -> tuple[int, ...]:
    return tuple(int(part) for part in testbed["xinference_version"].split("+")[0].split(".")[:3])


def credentials(testbed: dict) -> dict:
    return {"server_url": testbed["url"], "model_uid": testbed["uids"]["chat"], "api_key": testbed.get("api_key") or ""}


def test_the_server_refuses_streamed_tool_calls_exactly_from_1_10_to_2_1(testbed):
    # The fact the plugin works around: the tiny chat model is a Qwen family on the transformers engine.
    headers = {"Authorization": f"Bearer {testbed['api_key']}"} if testbed.get("api_key") else {}
    body = {
        "model": testbed["uids"]["chat"],
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_TOOL.parameters}}],
        "stream": True,
    }
    with requests.post(testbed["url"] + "/v1/chat/completions", json=body, headers=headers, timeout=60, stream=True) as answer:
        refused = answer.status_code == 400 and "Streaming support for tool calls" in answer.text
    assert refused == ((1, 10, 0) <= version_of(testbed) < (2, 2, 0))


def test_an_agents_streamed_tool_calls_work_on_every_version_again_and_again(testbed):
    model = XinferenceLargeLanguageModel(model_schemas=[])
    question = [UserPromptMessage(content="What is the weather in Paris?")]
    for _ in range(2):  # the second call goes straight to the way that works
        chunks = list(model.invoke("tiny", credentials(testbed), question, {}, tools=[WEATHER_TOOL], stream=True))
        [call] = chunks[-1].delta.message.tool_calls
        assert call.function.name == testbed["tool_answer"]["name"]
        assert json.loads(call.function.arguments) == testbed["tool_answer"]["arguments"]
        assert chunks[-1].delta.finish_reason == "tool_calls"
        assert chunks[-1].delta.usage.completion_tokens > 0
        assert "<tool_call>" not in "".join(chunk.delta.message.content or "" for chunk in chunks)

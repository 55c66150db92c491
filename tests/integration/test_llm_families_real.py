"""Real families' chat templates on the real server (issue 11, step 5).

The testbed's tiny chat model is registered again under real families: Qwen2's template
(which needs the tool name on tool results) and qwen3.6's (`strict_system_first`: the
server answers 400 to a system message after the first). An agent conversation with a
tool result and a late system message goes through the plugin, and the same conversation
is sent directly, once as a plain OpenAI client sends it and once as the plugin does.
"""

import json

import pytest
import requests
from dify_plugin.entities.model.message import (
    AssistantPromptMessage,
    PromptMessageTool,
    SystemPromptMessage,
    ToolPromptMessage,
    UserPromptMessage,
)

from models.llm.llm import XinferenceLargeLanguageModel

pytestmark = pytest.mark.integration

WEATHER = PromptMessageTool(
    name="get_weather",
    description="Current weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
# Greedy and short: the tiny model answers the same to the plugin and to the direct call.
PARAMETERS = {"temperature": 0.0, "max_tokens": 12, "seed": 1}


def server(testbed: dict, method: str, path: str, body=None, timeout=60) -> requests.Response:
    token = testbed.get("admin_token") or testbed.get("api_key")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(method, testbed["url"] + path, json=body, headers=headers, timeout=timeout)


def register_as(testbed: dict, uid: str, family: str) -> None:
    """The tiny chat model's weights, with `family`'s own template and stop words."""
    tiny = server(testbed, "GET", f"/v1/model_registrations/LLM/{testbed['uids']['chat']}").json()
    real = server(testbed, "GET", f"/v1/model_registrations/LLM/{family}").json()
    registration = {
        "version": 2,
        "model_name": uid,
        "model_lang": ["en"],
        "model_ability": ["chat", "tools"],
        "model_description": f"tiny testbed model with {family}'s chat template",
        "model_family": family,
        "context_length": 4096,
        # The tiny model is a Qwen2; without this the server picks the class of the family's
        # real architecture (qwen3.6's is a vision model).
        "architectures": ["Qwen2ForCausalLM"],
        "model_specs": [{**tiny["model_specs"][0], "model_id": None}],
        "chat_template": real["chat_template"],
        "stop_token_ids": real.get("stop_token_ids") or tiny.get("stop_token_ids"),
        "stop": real.get("stop") or tiny.get("stop"),
        "tool_parser": "qwen",
    }
    answer = server(testbed, "POST", "/v1/model_registrations/LLM", {"model": json.dumps(registration), "persist": False})
    assert answer.status_code == 200, answer.text
    launch = {
        "model_uid": uid,
        "model_name": uid,
        "model_type": "LLM",
        "model_engine": "Transformers",
        "model_format": "pytorch",
        "model_size_in_billions": tiny["model_specs"][0]["model_size_in_billions"],
        "quantization": "none",
    }
    answer = server(testbed, "POST", "/v1/models", launch, timeout=600)
    assert answer.status_code == 200, answer.text


@pytest.fixture(scope="module")
def families(testbed):
    version = testbed.get("xinference_version") or ""
    if not version.startswith("4."):
        # The families and templates proven here are 4.1.0's catalog (strict_system_first is a 3.x+ check).
        pytest.skip(f"registers 4.x catalog families; this testbed runs Xinference {version}")
    uids = {"qwen2-instruct": "tiny-as-qwen2", "qwen3.6": "tiny-as-qwen3.6"}
    try:
        for family, uid in uids.items():
            register_as(testbed, uid, family)
        yield uids
    finally:
        for uid in uids.values():
            server(testbed, "DELETE", f"/v1/models/{uid}", timeout=120)
            server(testbed, "DELETE", f"/v1/model_registrations/LLM/{uid}")


def agent_turn() -> list:
    call = AssistantPromptMessage.ToolCall(
        id="call_1",
        type="function",
        function=AssistantPromptMessage.ToolCall.ToolCallFunction(name="get_weather", arguments='{"city": "Paris"}'),
    )
    return [
        SystemPromptMessage(content="You are a weather assistant."),
        UserPromptMessage(content="What is the weather in Paris?"),
        AssistantPromptMessage(content="", tool_calls=[call]),
        ToolPromptMessage(content='{"temperature": 18}', tool_call_id="call_1", name="get_weather"),
        SystemPromptMessage(content="Answer in one short sentence."),
    ]


def through_the_plugin(testbed: dict, uid: str) -> str:
    credentials = {"server_url": testbed["url"], "model_uid": uid, "api_key": testbed.get("api_key") or ""}
    model = XinferenceLargeLanguageModel(model_schemas=[])
    chunks = model.invoke("tiny", credentials, agent_turn(), dict(PARAMETERS), tools=[WEATHER], stream=False)
    return "".join(chunk.delta.message.content or "" for chunk in chunks)


def direct(testbed: dict, uid: str, messages: list) -> requests.Response:
    tools = [{"type": "function", "function": WEATHER.model_dump()}]
    body = {"model": uid, "messages": messages, "tools": tools, **PARAMETERS}
    return requests.post(testbed["url"] + "/v1/chat/completions", json=body, timeout=120, headers=_inference(testbed))


def _inference(testbed: dict) -> dict:
    return {"Authorization": f"Bearer {testbed['api_key']}"} if testbed.get("api_key") else {}


PLAIN_CLIENT = [  # what an OpenAI client sends for the same turn: no tool name, the system message where it was
    {"role": "system", "content": "You are a weather assistant."},
    {"role": "user", "content": "What is the weather in Paris?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
        ],
    },
    {"role": "tool", "content": '{"temperature": 18}', "tool_call_id": "call_1"},
    {"role": "system", "content": "Answer in one short sentence."},
]
AS_THE_PLUGIN_SENDS = [
    {"role": "system", "content": "You are a weather assistant.\n\nAnswer in one short sentence."},
    *PLAIN_CLIENT[1:3],
    {**PLAIN_CLIENT[3], "name": "get_weather"},
]


def test_qwen2_template_needs_the_tool_name_which_the_plugin_sends(testbed, families):
    uid = families["qwen2-instruct"]
    refused = direct(testbed, uid, PLAIN_CLIENT)
    assert refused.status_code >= 400  # the template raises "Tool response dicts require a 'name' key"
    accepted = direct(testbed, uid, AS_THE_PLUGIN_SENDS)
    assert accepted.status_code == 200, accepted.text
    assert through_the_plugin(testbed, uid) == accepted.json()["choices"][0]["message"]["content"]


def test_strict_system_first_family_gets_one_leading_system_message(testbed, families):
    uid = families["qwen3.6"]
    described = server(testbed, "GET", f"/v1/models/{uid}").json()
    assert described["strict_system_first"] is True
    refused = direct(testbed, uid, PLAIN_CLIENT)
    assert refused.status_code == 400 and "system" in refused.text
    accepted = direct(testbed, uid, AS_THE_PLUGIN_SENDS)
    assert accepted.status_code == 200, accepted.text
    assert through_the_plugin(testbed, uid) == accepted.json()["choices"][0]["message"]["content"]

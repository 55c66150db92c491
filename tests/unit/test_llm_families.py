"""What a model's family needs from a Dify conversation (issue 11), through the SDK's entry points."""

import json

import pytest
import responses
from dify_plugin.entities.model import ModelFeature, ModelPropertyKey
from dify_plugin.entities.model.message import (
    AssistantPromptMessage,
    DeveloperPromptMessage,
    PromptMessageTool,
    SystemPromptMessage,
    ToolPromptMessage,
    UserPromptMessage,
)
from dify_plugin.errors.model import CredentialsValidateFailedError, InvokeBadRequestError

from models.llm.llm import XinferenceLargeLanguageModel
from tests.unit.xinference import SERVER, UID, chat_answer, chunk, credentials, describe_llm, sse

DESCRIBE = f"{SERVER}/v1/models/{UID}"
CHAT = f"{SERVER}/v1/chat/completions"
WEATHER = PromptMessageTool(
    name="get_weather",
    description="Weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)
# Xinference 4.1.0's refusal, with its (long) family list shortened.
TOOLS_REFUSED = {"detail": "Only {'qwen2.5-instruct', 'glm4-chat', 'llama-3.1-instruct'} support tool calls"}


def llm() -> XinferenceLargeLanguageModel:
    return XinferenceLargeLanguageModel(model_schemas=[])


def invoke(messages, parameters=None, tools=None, creds=None, stream=False) -> str:
    """The answer's text (the SDK hands even a blocking answer over as chunks)."""
    chunks = llm().invoke("my-model", creds or credentials(), messages, parameters or {}, tools=tools, stream=stream)
    return "".join(chunk.delta.message.content or "" for chunk in chunks)


def sent(call_index: int = -1) -> dict:
    return json.loads(responses.calls[call_index].request.body)


def schema(creds=None):
    return llm().get_customizable_model_schema("my-model", creds or credentials())


def call(call_id: str, name: str, arguments: str) -> AssistantPromptMessage.ToolCall:
    return AssistantPromptMessage.ToolCall(
        id=call_id, type="function", function=AssistantPromptMessage.ToolCall.ToolCallFunction(name=name, arguments=arguments)
    )


# ---- the conversation ------------------------------------------------------------------


@responses.activate
@pytest.mark.parametrize("stream", [False, True])
def test_earlier_reasoning_leaves_the_answer_text_and_travels_as_reasoning_content(stream):
    responses.get(DESCRIBE, json=describe_llm(abilities=["chat", "reasoning"]))
    responses.post(CHAT, body=sse(chunk({"content": "Berlin"}, "stop")) if stream else json.dumps(chat_answer()))
    invoke(
        [
            UserPromptMessage(content="Capital of France?"),
            AssistantPromptMessage(content="<think>\nThe user asks about France.\n</think>\n\nParis."),
            UserPromptMessage(content="And Germany?"),
        ],
        stream=stream,
    )
    earlier = sent()["messages"][1]
    assert earlier == {"role": "assistant", "content": "Paris.", "reasoning_content": "The user asks about France."}


@responses.activate
@pytest.mark.parametrize(
    ("stored", "answer", "reasoning"),
    [
        ("Let me see.\n</think>\n\nParis.", "Paris.", "Let me see."),  # the opening tag was never streamed
        ("<think>A</think>Step one.<think>B</think>Paris.", "Step one.Paris.", "A\n\nB"),  # agent rounds
    ],
)
def test_every_reasoning_block_leaves_the_answer_text(stored, answer, reasoning):
    responses.get(DESCRIBE, json=describe_llm())
    responses.post(CHAT, json=chat_answer())
    invoke([UserPromptMessage(content="Q"), AssistantPromptMessage(content=stored), UserPromptMessage(content="?")])
    assert sent()["messages"][1] == {"role": "assistant", "content": answer, "reasoning_content": reasoning}


@responses.activate
def test_an_answer_without_reasoning_is_sent_as_it_is():
    responses.get(DESCRIBE, json=describe_llm())
    responses.post(CHAT, json=chat_answer())
    invoke([UserPromptMessage(content="Hi"), AssistantPromptMessage(content="Hello <b>"), UserPromptMessage(content="?")])
    assert sent()["messages"][1] == {"role": "assistant", "content": "Hello <b>"}


@responses.activate
def test_tool_results_carry_the_tool_name():
    responses.get(DESCRIBE, json=describe_llm())
    responses.post(CHAT, json=chat_answer())
    invoke(
        [
            UserPromptMessage(content="Weather in Paris?"),
            AssistantPromptMessage(content="", tool_calls=[call("call_1", "get_weather", '{"city": "Paris"}')]),
            ToolPromptMessage(content="Sunny", tool_call_id="call_1", name="get_weather"),
        ],
        tools=[WEATHER],
    )
    assert sent()["messages"][2] == {"role": "tool", "content": "Sunny", "tool_call_id": "call_1", "name": "get_weather"}


@responses.activate
def test_later_system_and_developer_messages_join_the_leading_system_message_in_order():
    responses.get(DESCRIBE, json=describe_llm())
    responses.post(CHAT, json=chat_answer())
    invoke(
        [
            SystemPromptMessage(content="Be brief."),
            UserPromptMessage(content="Capital of France?"),
            AssistantPromptMessage(content="Paris."),
            SystemPromptMessage(content="Answer in one word."),
            DeveloperPromptMessage(content="Use metric units."),
            UserPromptMessage(content="And Germany?"),
        ]
    )
    assert sent()["messages"] == [
        {"role": "system", "content": "Be brief.\n\nAnswer in one word.\n\nUse metric units."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And Germany?"},
    ]


@responses.activate
def test_a_lone_late_system_message_moves_to_the_front():
    responses.get(DESCRIBE, json=describe_llm())
    responses.post(CHAT, json=chat_answer())
    invoke([UserPromptMessage(content="Hi"), SystemPromptMessage(content="Be brief.")])
    assert [m["role"] for m in sent()["messages"]] == ["system", "user"]


# ---- tools the server refuses ----------------------------------------------------------


@responses.activate
def test_refused_tools_are_dropped_remembered_and_no_longer_offered():
    responses.get(DESCRIBE, json=describe_llm(abilities=["chat", "tools"], model_family="glm4-0414"))
    responses.post(CHAT, status=400, json=TOOLS_REFUSED)
    responses.post(CHAT, json=chat_answer(content="It is sunny."))
    assert ModelFeature.TOOL_CALL in schema().features

    answer = invoke([UserPromptMessage(content="Weather in Paris?")], tools=[WEATHER])

    assert answer == "It is sunny."
    assert "tools" in sent(-2) and "tools" not in sent(-1)
    assert ModelFeature.TOOL_CALL not in schema().features
    calls_before = len(responses.calls)
    invoke([UserPromptMessage(content="Weather in Rome?")], tools=[WEATHER])
    assert len(responses.calls) - calls_before == 1 and "tools" not in sent()


@responses.activate
def test_other_bad_requests_are_not_retried():
    responses.get(DESCRIBE, json=describe_llm())
    responses.post(CHAT, status=400, json={"detail": "messages: found a system message at position 2"})
    with pytest.raises(InvokeBadRequestError, match="position 2"):
        invoke([UserPromptMessage(content="Hi")], tools=[WEATHER])
    assert len([c for c in responses.calls if c.request.method == "POST"]) == 1


# ---- family-aware parameters -----------------------------------------------------------


@responses.activate
@pytest.mark.parametrize(
    ("family", "options", "chosen"),
    [
        ("gpt-oss", ["low", "medium", "high"], "high"),
        ("qwen3.8", ["low", "medium", "xhigh"], "medium"),
        ("glm-5.2", ["high", "max"], "high"),
    ],
)
def test_reasoning_effort_is_offered_with_the_templates_values_and_reaches_the_template(family, options, chosen):
    responses.get(DESCRIBE, json=describe_llm(abilities=["chat", "reasoning"], model_family=family, model_name=family))
    responses.post(CHAT, json=chat_answer())
    rules = {rule.name: rule for rule in schema().parameter_rules}
    assert rules["reasoning_effort"].options == options
    invoke([UserPromptMessage(content="Hi")], parameters={"reasoning_effort": chosen})
    assert sent()["chat_template_kwargs"] == {"reasoning_effort": chosen}


@responses.activate
def test_no_reasoning_effort_for_families_whose_template_ignores_it():
    responses.get(DESCRIBE, json=describe_llm(abilities=["chat", "reasoning", "hybrid"], model_family="qwen3"))
    responses.post(CHAT, json=chat_answer())
    assert "reasoning_effort" not in {rule.name for rule in schema().parameter_rules}
    invoke([UserPromptMessage(content="Hi")], parameters={"enable_thinking": False})
    assert sent()["chat_template_kwargs"] == {"enable_thinking": False}


@responses.activate
def test_a_model_that_cannot_stop_thinking_gets_no_thinking_switch():
    # qwen3.8-max's template raises "Disabling thinking is not supported"; it is not hybrid.
    responses.get(DESCRIBE, json=describe_llm(abilities=["chat", "tools", "reasoning"], model_family="qwen3.8-max"))
    names = {rule.name for rule in schema().parameter_rules}
    assert "enable_thinking" not in names and "reasoning_effort" in names


# ---- the admin's overrides -------------------------------------------------------------

TOKEN_ROUTER = {"model_type": "LLM", "model_name": "router-uid", "model_engine": "token_router", "model_ability": ["chat"]}


@responses.activate
def test_overrides_complete_a_thin_token_router_description():
    responses.get(DESCRIBE, json=TOKEN_ROUTER)
    responses.post(CHAT, json=chat_answer())
    creds = credentials(
        llm_context_size="131072", llm_max_output_tokens="8192", llm_tool_calling="on", llm_vision="on"
    )
    described = schema(creds)
    assert described.model_properties[ModelPropertyKey.CONTEXT_SIZE] == 131072
    assert {rule.name: rule for rule in described.parameter_rules}["max_tokens"].max == 8192
    assert {ModelFeature.TOOL_CALL, ModelFeature.VISION} <= set(described.features)
    invoke([UserPromptMessage(content="Weather?")], tools=[WEATHER], creds=creds)
    assert sent()["tools"][0]["function"]["name"] == "get_weather"


@responses.activate
def test_empty_overrides_change_nothing():
    responses.get(DESCRIBE, json=TOKEN_ROUTER)
    plain = schema()
    empty = schema(
        credentials(llm_context_size="", llm_max_output_tokens=" ", llm_tool_calling="auto", llm_vision="", llm_structured_output="auto")
    )
    assert plain.model_properties == empty.model_properties
    assert plain.features == empty.features
    assert [r.model_dump() for r in plain.parameter_rules] == [r.model_dump() for r in empty.parameter_rules]
    assert ModelFeature.TOOL_CALL not in plain.features


@responses.activate
def test_off_wins_over_the_description():
    responses.get(DESCRIBE, json=describe_llm(abilities=["chat", "tools", "vision"]))
    responses.post(CHAT, json=chat_answer())
    creds = credentials(llm_tool_calling="off", llm_vision="off", llm_structured_output="off")
    described = schema(creds)
    assert not {ModelFeature.TOOL_CALL, ModelFeature.VISION, ModelFeature.STRUCTURED_OUTPUT} & set(described.features)
    assert "response_format" not in {rule.name for rule in described.parameter_rules}
    invoke([UserPromptMessage(content="Weather?")], tools=[WEATHER], creds=creds)
    assert "tools" not in sent()


@responses.activate
@pytest.mark.parametrize(
    ("field", "value", "wording"),
    [
        ("llm_context_size", "lots", "whole number"),
        ("llm_max_output_tokens", "0", "at least 1"),
        ("llm_tool_calling", "maybe", "auto, on or off"),
    ],
)
def test_a_bad_override_is_named_when_saving_and_when_invoking(field, value, wording):
    responses.get(DESCRIBE, json=describe_llm())
    creds = credentials(**{field: value})
    with pytest.raises(CredentialsValidateFailedError, match=f"{field}.*{wording}"):
        llm().validate_credentials("my-model", creds)
    with pytest.raises(InvokeBadRequestError, match=f"{field}.*{wording}"):
        invoke([UserPromptMessage(content="Hi")], creds=creds)
    assert not [c for c in responses.calls if c.request.method == "POST"]


# ---- what particular templates need ----------------------------------------------------


@responses.activate
def test_after_a_refusal_earlier_tool_turns_reach_the_model_as_text():
    responses.get(DESCRIBE, json=describe_llm(abilities=["chat", "tools"], model_family="seed-oss"))
    responses.post(CHAT, status=400, json={"detail": "Only {'qwen2.5-instruct', 'glm4-chat'} support tool messages"})
    responses.post(CHAT, json=chat_answer(content="It is sunny."))
    invoke(
        [
            UserPromptMessage(content="Weather in Paris?"),
            AssistantPromptMessage(content="", tool_calls=[call("call_1", "get_weather", '{"city": "Paris"}')]),
            ToolPromptMessage(content="Sunny", tool_call_id="call_1", name="get_weather"),
        ],
        tools=[WEATHER],
    )
    assert sent()["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": 'Called get_weather({"city": "Paris"})'},
        {"role": "user", "content": "get_weather returned: Sunny"},
    ]


@responses.activate
def test_a_template_without_a_system_role_gets_the_instructions_in_the_first_user_turn():
    responses.get(DESCRIBE, json=describe_llm(abilities=["chat"], model_family="deepseek-v3"))
    responses.post(CHAT, json=chat_answer())
    invoke([SystemPromptMessage(content="Be brief."), UserPromptMessage(content="Hi")])
    assert sent()["messages"] == [{"role": "user", "content": "Be brief.\n\nHi"}]


@responses.activate
@pytest.mark.parametrize(("family", "arguments"), [("MiniMax-M2", {"city": "Paris"}), ("qwen3", '{"city": "Paris"}')])
def test_tool_call_arguments_are_objects_only_for_templates_that_need_them(family, arguments):
    responses.get(DESCRIBE, json=describe_llm(abilities=["chat", "tools"], model_family=family))
    responses.post(CHAT, json=chat_answer())
    invoke(
        [
            UserPromptMessage(content="Weather in Paris?"),
            AssistantPromptMessage(content="", tool_calls=[call("call_1", "get_weather", '{"city": "Paris"}')]),
            ToolPromptMessage(content="Sunny", tool_call_id="call_1", name="get_weather"),
        ],
        tools=[WEATHER],
    )
    assert sent()["messages"][1]["tool_calls"][0]["function"]["arguments"] == arguments

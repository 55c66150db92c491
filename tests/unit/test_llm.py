import json

import pytest
import responses
from dify_plugin.entities.model import ModelFeature, ModelPropertyKey
from dify_plugin.entities.model.llm import LLMResultChunk
from dify_plugin.entities.model.message import (
    AssistantPromptMessage,
    DeveloperPromptMessage,
    ImagePromptMessageContent,
    PromptMessageTool,
    SystemPromptMessage,
    TextPromptMessageContent,
    ToolPromptMessage,
    UserPromptMessage,
)
from dify_plugin.errors.model import (
    InvokeAuthorizationError,
    InvokeBadRequestError,
    InvokeRateLimitError,
    InvokeServerUnavailableError,
)

from models.llm.llm import XinferenceLargeLanguageModel
from tests.unit.xinference import (
    SERVER,
    UID,
    chat_answer,
    chunk,
    credentials,
    describe_llm,
    serve_answer,
    sse,
)

DESCRIBE = f"{SERVER}/v1/models/{UID}"
CHAT = f"{SERVER}/v1/chat/completions"
COMPLETIONS = f"{SERVER}/v1/completions"
WEATHER_TOOL = PromptMessageTool(
    name="get_weather",
    description="Weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def llm() -> XinferenceLargeLanguageModel:
    return XinferenceLargeLanguageModel(model_schemas=[])


def invoke(stream: bool, messages=None, parameters=None, creds=None, **kwargs) -> list[LLMResultChunk]:
    return list(
        llm().invoke(
            "my-model",
            creds or credentials(),
            messages or [UserPromptMessage(content="Hi")],
            parameters or {},
            stream=stream,
            **kwargs,
        )
    )


def text_of(chunks: list[LLMResultChunk]) -> str:
    return "".join(c.delta.message.content or "" for c in chunks)


def sent_body(call_index: int = -1) -> dict:
    return json.loads(responses.calls[call_index].request.body)


def serve_describe(**kwargs) -> None:
    responses.get(DESCRIBE, json=describe_llm(**kwargs))


# ---- schema ------------------------------------------------------------------------------


@responses.activate
def test_schema_follows_the_servers_description():
    serve_describe(abilities=["generate", "chat", "tools", "vision"], context_length=8192)
    schema = llm().get_customizable_model_schema("my-model", credentials())

    assert schema.model_properties[ModelPropertyKey.MODE] == "chat"
    assert schema.model_properties[ModelPropertyKey.CONTEXT_SIZE] == 8192
    assert {ModelFeature.TOOL_CALL, ModelFeature.MULTI_TOOL_CALL, ModelFeature.STREAM_TOOL_CALL} <= set(
        schema.features
    )
    assert ModelFeature.VISION in schema.features
    assert ModelFeature.STRUCTURED_OUTPUT in schema.features
    rules = {rule.name: rule for rule in schema.parameter_rules}
    assert rules["max_tokens"].max == 8192
    assert rules["temperature"].max == 2.0
    assert rules["presence_penalty"].min == -2.0 and rules["frequency_penalty"].max == 2.0
    assert {"top_p", "top_k", "repetition_penalty", "seed", "response_format", "json_schema"} <= set(rules)
    assert "enable_thinking" not in rules  # only hybrid models get the switch


@responses.activate
def test_generate_only_model_is_completion_mode_without_chat_features():
    serve_describe(abilities=["generate"])
    schema = llm().get_customizable_model_schema("my-model", credentials())
    assert schema.model_properties[ModelPropertyKey.MODE] == "completion"
    assert ModelFeature.TOOL_CALL not in (schema.features or [])


@responses.activate
def test_hybrid_model_offers_a_thinking_switch_and_audio_models_declare_audio():
    serve_describe(abilities=["generate", "chat", "hybrid", "audio"])
    schema = llm().get_customizable_model_schema("my-model", credentials())
    assert "enable_thinking" in {rule.name for rule in schema.parameter_rules}
    assert ModelFeature.AUDIO in schema.features
    assert ModelFeature.TOOL_CALL not in schema.features


@responses.activate
def test_schema_is_described_once_then_cached():
    serve_describe()
    schemas = [llm().get_customizable_model_schema("my-model", credentials()) for _ in range(5)]
    assert len(responses.calls) == 1
    assert all(schema is schemas[0] for schema in schemas)  # built once per cached description


@responses.activate
def test_blocking_invoke_makes_one_http_request_after_warm_up():
    serve_describe()
    responses.post(CHAT, json=chat_answer())
    invoke(stream=False)
    calls_before = len(responses.calls)
    invoke(stream=False)
    assert len(responses.calls) - calls_before == 1


# ---- request body ------------------------------------------------------------------------


@responses.activate
def test_only_parameters_the_user_set_are_sent_and_temperature_zero_is_kept():
    serve_describe()
    responses.post(CHAT, json=chat_answer())
    invoke(stream=False, parameters={"temperature": 0.0, "top_k": 5, "seed": 7}, stop=["END"])
    body = sent_body()
    assert body["model"] == UID
    assert body["temperature"] == 0.0
    assert body["top_k"] == 5 and body["seed"] == 7
    assert body["stop"] == ["END"]
    for unset in ("top_p", "max_tokens", "presence_penalty", "response_format", "chat_template_kwargs", "stream"):
        assert unset not in body


@responses.activate
def test_messages_tools_history_and_images_reach_the_server_in_openai_shape():
    serve_describe(abilities=["generate", "chat", "tools", "vision"])
    responses.post(CHAT, json=chat_answer())
    history = [
        SystemPromptMessage(content="Be brief."),
        DeveloperPromptMessage(content="Use metric units."),
        UserPromptMessage(
            content=[
                TextPromptMessageContent(data="What is in this picture, and the weather?"),
                ImagePromptMessageContent(format="png", base64_data="iVBORw0KGgo=", mime_type="image/png"),
            ]
        ),
        AssistantPromptMessage(
            content="",
            tool_calls=[
                AssistantPromptMessage.ToolCall(
                    id="call_a",
                    type="function",
                    function=AssistantPromptMessage.ToolCall.ToolCallFunction(
                        name="get_weather", arguments='{"city": "Paris"}'
                    ),
                ),
                AssistantPromptMessage.ToolCall(
                    id="call_b",
                    type="function",
                    function=AssistantPromptMessage.ToolCall.ToolCallFunction(
                        name="get_weather", arguments='{"city": "Rome"}'
                    ),
                ),
            ],
        ),
        ToolPromptMessage(content="18°C", tool_call_id="call_a"),
        ToolPromptMessage(content="24°C", tool_call_id="call_b"),
    ]
    invoke(stream=False, messages=history, tools=[WEATHER_TOOL])
    body = sent_body()
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "tool"]
    assert body["messages"][1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
    }
    assert [c["id"] for c in body["messages"][2]["tool_calls"]] == ["call_a", "call_b"]
    assert body["messages"][2]["tool_calls"][1]["function"] == {"name": "get_weather", "arguments": '{"city": "Rome"}'}
    assert body["messages"][4]["tool_call_id"] == "call_b"
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": WEATHER_TOOL.parameters,
            },
        }
    ]


@responses.activate
def test_json_schema_parameter_becomes_a_json_schema_response_format():
    serve_describe()
    responses.post(CHAT, json=chat_answer(content='{"answer": "yes"}'))
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    invoke(stream=False, parameters={"json_schema": json.dumps(schema)})
    assert sent_body()["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": schema},
    }


@responses.activate
def test_json_object_response_format():
    serve_describe()
    responses.post(CHAT, json=chat_answer(content="{}"))
    invoke(stream=False, parameters={"response_format": "json_object"})
    assert sent_body()["response_format"] == {"type": "json_object"}


@responses.activate
def test_hybrid_models_are_always_told_whether_to_think():
    serve_describe(abilities=["generate", "chat", "hybrid"])
    responses.post(CHAT, json=chat_answer())
    invoke(stream=False)
    assert sent_body()["chat_template_kwargs"] == {"enable_thinking": True}
    invoke(stream=False, parameters={"enable_thinking": False})
    assert sent_body()["chat_template_kwargs"] == {"enable_thinking": False}


@responses.activate
def test_stream_asks_for_usage():
    serve_describe()
    responses.post(CHAT, body=sse(chunk({"content": "Hi"}, finish_reason="stop", usage=(3, 1))))
    invoke(stream=True)
    assert sent_body()["stream"] is True
    assert sent_body()["stream_options"] == {"include_usage": True}


# ---- blocking answers ---------------------------------------------------------------------


@responses.activate
def test_blocking_chat_returns_text_and_the_servers_usage():
    serve_describe()
    responses.post(CHAT, json=chat_answer(content="Hello there", usage=(21, 4)))
    [only] = invoke(stream=False)
    assert only.delta.message.content == "Hello there"
    assert (only.delta.usage.prompt_tokens, only.delta.usage.completion_tokens) == (21, 4)


@responses.activate
def test_blocking_tool_calls_are_returned_with_their_arguments():
    serve_describe()
    calls = [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    ]
    responses.post(CHAT, json=chat_answer(content=None, finish_reason="tool_calls", tool_calls=calls))
    [only] = invoke(stream=False, tools=[WEATHER_TOOL])
    [call] = only.delta.message.tool_calls
    assert call.id == "call_1"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}


@responses.activate
def test_blocking_tool_calls_sharing_one_id_on_0_16_get_distinct_ids():
    serve_describe()
    same_id = "call_0c1b7c1e"
    calls = [
        {"id": same_id, "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"id": same_id, "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}},
    ]
    responses.post(CHAT, json=chat_answer(content=None, finish_reason="tool_calls", tool_calls=calls))
    [only] = invoke(stream=False, tools=[WEATHER_TOOL])
    ids = [call.id for call in only.delta.message.tool_calls]
    assert len(set(ids)) == 2


@responses.activate
def test_blocking_reasoning_content_is_wrapped_in_think_tags():
    serve_describe(abilities=["generate", "chat", "reasoning"])
    responses.post(CHAT, json=chat_answer(content="42", reasoning="Six times seven."))
    [only] = invoke(stream=False)
    assert only.delta.message.content == "<think>\nSix times seven.\n</think>42"


@responses.activate
def test_usage_of_minus_one_falls_back_to_an_offline_estimate():
    serve_describe()
    responses.post(CHAT, json=chat_answer(content="A fairly long answer with several words.", usage=(-1, -1)))
    [only] = invoke(stream=False)
    assert only.delta.usage.prompt_tokens > 0
    assert only.delta.usage.completion_tokens > 0


@responses.activate
def test_completion_mode_posts_a_prompt_to_completions():
    serve_describe(abilities=["generate"])
    responses.post(
        COMPLETIONS,
        json={
            "id": "cmpl-1",
            "object": "text_completion",
            "created": 1,
            "model": UID,
            "choices": [{"text": " world", "index": 0, "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3},
        },
    )
    [only] = invoke(stream=False, messages=[UserPromptMessage(content="Hello")])
    assert sent_body()["prompt"] == "Hello"
    assert "messages" not in sent_body()
    assert only.delta.message.content == " world"


# ---- streams --------------------------------------------------------------------------------


@responses.activate
def test_stream_yields_text_as_it_arrives_with_usage_and_finish_reason_on_the_last_chunk():
    serve_describe()
    body = sse(
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
        chunk({"content": ""}, finish_reason="stop", usage=(9, 2)),
        # 4.1.0 transformers: a second closing chunk, then the usage-only chunk
        chunk({}, finish_reason="stop"),
        chunk(choices=False, usage=(9, 2)),
        pings=True,
    )
    responses.post(CHAT, body=body)
    chunks = invoke(stream=True)
    assert [c.delta.message.content for c in chunks[:-1]] == ["Hel", "lo"]
    assert chunks[-1].delta.finish_reason == "stop"
    assert (chunks[-1].delta.usage.prompt_tokens, chunks[-1].delta.usage.completion_tokens) == (9, 2)
    assert all(c.delta.usage is None for c in chunks[:-1])
    assert [c.delta.index for c in chunks] == list(range(len(chunks)))


@responses.activate
def test_stream_keeps_the_first_real_finish_reason_and_the_last_usage():
    serve_describe()
    body = sse(
        chunk({"content": "Hi"}),
        chunk({"content": ""}, finish_reason="length", usage=(5, 1)),
        chunk({}, finish_reason="stop"),
        chunk(choices=False, usage=(5, 16)),
    )
    responses.post(CHAT, body=body)
    last = invoke(stream=True)[-1]
    assert last.delta.finish_reason == "length"
    assert last.delta.usage.completion_tokens == 16


@responses.activate
def test_streamed_tool_call_fragments_are_merged_per_index():
    serve_describe()
    body = sse(
        chunk({"content": "", "tool_calls": []}),
        chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"tz": "CET"}'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        chunk({}, finish_reason="tool_calls"),
    )
    responses.post(CHAT, body=body)
    last = invoke(stream=True, tools=[WEATHER_TOOL])[-1]
    calls = last.delta.message.tool_calls
    assert [(c.id, c.function.name) for c in calls] == [("call_a", "get_weather"), ("call_b", "get_time")]
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}
    assert json.loads(calls[1].function.arguments) == {"tz": "CET"}
    assert last.delta.finish_reason == "tool_calls"


@responses.activate
def test_streamed_complete_tool_calls_without_index_on_old_servers():
    serve_describe()
    body = sse(
        chunk({"tool_calls": [{"id": "call_x", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}),
        chunk({"tool_calls": [{"id": "call_y", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]}),
        chunk({"content": ""}, finish_reason="tool_calls"),
    )
    responses.post(CHAT, body=body)
    calls = invoke(stream=True, tools=[WEATHER_TOOL])[-1].delta.message.tool_calls
    assert [json.loads(c.function.arguments)["city"] for c in calls] == ["Paris", "Rome"]


def _tool_call_text_stream(*pieces: str) -> bytes:
    # Xinference 4.1.0's transformers engine streams the model's raw tool-call text as content.
    events = [chunk({"content": piece}) for piece in pieces]
    return sse(*events, chunk({"content": ""}, finish_reason="stop", usage=(30, 20)))


@responses.activate
def test_tool_call_text_in_a_stream_becomes_a_tool_call_when_tools_were_offered():
    serve_describe()
    responses.post(
        CHAT,
        body=_tool_call_text_stream("Let me check.", "<tool", '_call>\n{"name": "get_weather", ', '"arguments": {"city": "Paris"}}\n</tool_call>'),
    )
    chunks = invoke(stream=True, tools=[WEATHER_TOOL])
    assert text_of(chunks) == "Let me check."
    [call] = chunks[-1].delta.message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert chunks[-1].delta.finish_reason == "tool_calls"


@responses.activate
def test_tool_call_text_is_left_alone_without_tools_or_when_it_is_not_a_call():
    serve_describe()
    text = 'Use <tool_call>{"name": "x", "arguments": {}}</tool_call> like this.'
    responses.post(CHAT, body=_tool_call_text_stream(text))
    assert text_of(invoke(stream=True)) == text
    responses.post(CHAT, body=_tool_call_text_stream("a <tool_call>not json</tool_call> b <tool"))
    chunks = invoke(stream=True, tools=[WEATHER_TOOL])
    assert text_of(chunks) == "a <tool_call>not json</tool_call> b <tool"
    assert chunks[-1].delta.message.tool_calls == []


@responses.activate
def test_streamed_reasoning_content_is_wrapped_once():
    serve_describe(abilities=["generate", "chat", "reasoning"])
    body = sse(
        chunk({"content": None, "reasoning_content": "Let me"}),
        chunk({"content": None, "reasoning_content": " think."}),
        chunk({"content": "Answer."}),
        chunk({}, finish_reason="stop", usage=(4, 4)),
    )
    responses.post(CHAT, body=body)
    assert text_of(invoke(stream=True)) == "<think>\nLet me think.\n</think>Answer."


@responses.activate
def test_inline_think_tags_pass_through_unchanged():
    serve_describe(abilities=["generate", "chat", "reasoning"])
    body = sse(chunk({"content": "<think>\nHmm.\n</think>"}), chunk({"content": "Yes."}, finish_reason="stop"))
    responses.post(CHAT, body=body)
    assert text_of(invoke(stream=True)) == "<think>\nHmm.\n</think>Yes."


@responses.activate
def test_stream_that_only_reasons_still_closes_the_think_block():
    serve_describe(abilities=["generate", "chat", "reasoning"])
    body = sse(chunk({"reasoning_content": "Thinking"}), chunk({}, finish_reason="length"))
    responses.post(CHAT, body=body)
    assert text_of(invoke(stream=True)) == "<think>\nThinking\n</think>"


@responses.activate
def test_completions_stream_without_done_ends_cleanly():
    serve_describe(abilities=["generate"])
    events = [
        {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": UID,
         "choices": [{"text": "Once", "index": 0, "logprobs": None, "finish_reason": None}]},
        {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": UID,
         "choices": [{"text": " upon", "index": 0, "logprobs": None, "finish_reason": "length"}],
         "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}},
    ]
    responses.post(COMPLETIONS, body=sse(*events, done=False))
    chunks = invoke(stream=True)
    assert text_of(chunks) == "Once upon"
    assert chunks[-1].delta.finish_reason == "length"
    assert chunks[-1].delta.usage.total_tokens == 5


@responses.activate
def test_mid_stream_error_event_raises_instead_of_truncating():
    serve_describe()
    body = sse(chunk({"content": "Partial"}), {"error": "CUDA out of memory"}, done=False)
    responses.post(CHAT, body=body)
    with pytest.raises(InvokeServerUnavailableError, match="CUDA out of memory"):
        invoke(stream=True)


@responses.activate
def test_mid_stream_rate_limit_is_a_rate_limit_error():
    serve_describe()
    body = sse({"error": "429: Rate limit reached for the model."}, done=False)
    responses.post(CHAT, body=body)
    with pytest.raises(InvokeRateLimitError, match="Xinference answered 429: Rate limit reached") as raised:
        invoke(stream=True)
    assert "429: 429" not in str(raised.value)


@responses.activate
def test_stream_that_stops_without_finish_reason_is_an_error_not_a_short_answer():
    serve_describe()
    responses.post(CHAT, body=sse(chunk({"content": "Half an ans"}), done=False))
    with pytest.raises(InvokeServerUnavailableError, match="ended before the answer was complete"):
        invoke(stream=True)


@responses.activate
def test_malformed_event_is_a_clear_server_error():
    serve_describe()
    responses.post(CHAT, body=b'data: {"choices": [\r\n\r\n')
    with pytest.raises(InvokeServerUnavailableError, match="malformed"):
        invoke(stream=True)


# ---- errors ----------------------------------------------------------------------------------


# What every model type shares (401, 404, 429, 500, 503, ...) is in test_model_contract.py;
# these answers only a chat model gets.
@pytest.mark.parametrize(
    ("status", "body", "error", "words"),
    [
        (400, {"detail": "Only ['qwen2.5-instruct'] support tool calls"}, InvokeBadRequestError, "support tool calls"),
        (501, {"detail": "logit_bias is not supported"}, InvokeBadRequestError, "logit_bias"),
    ],
)
@responses.activate
def test_chat_only_errors_map_to_dify_errors_with_the_servers_words(status, body, error, words):
    serve_describe()
    serve_answer("POST", CHAT, status, body)
    with pytest.raises(error, match=words):
        invoke(stream=False)


@responses.activate
def test_errors_before_a_stream_starts_are_mapped_too():
    serve_describe()
    responses.post(CHAT, status=401, json={"detail": "Could not validate credentials"})
    with pytest.raises(InvokeAuthorizationError, match="Could not validate credentials"):
        invoke(stream=True)


# ---- validation ------------------------------------------------------------------------------


@responses.activate
def test_validation_describes_then_makes_one_tiny_real_call():
    serve_describe()
    responses.post(CHAT, json=chat_answer(content="Hi", usage=(1, 1)))
    llm().validate_credentials("my-model", credentials())
    assert [c.request.method for c in responses.calls] == ["GET", "POST"]
    assert sent_body()["max_tokens"] <= 8


@responses.activate
def test_validation_of_a_generate_only_model_uses_completions():
    serve_describe(abilities=["generate"])
    responses.post(COMPLETIONS, json={"choices": [{"text": "x", "index": 0, "finish_reason": "length"}]})
    llm().validate_credentials("my-model", credentials())
    assert responses.calls[-1].request.url == COMPLETIONS


# ---- tokens ----------------------------------------------------------------------------------


def test_num_tokens_is_offline_and_grows_with_the_prompt():
    short = llm().get_num_tokens("m", credentials(), [UserPromptMessage(content="Hello")])
    long = llm().get_num_tokens("m", credentials(), [UserPromptMessage(content="Hello " * 1000)])
    with_tools = llm().get_num_tokens("m", credentials(), [UserPromptMessage(content="Hello")], [WEATHER_TOOL])
    assert 0 < short < long
    assert with_tools > short
    assert 900 <= long <= 1300  # "Hello " is one token in BPE vocabularies

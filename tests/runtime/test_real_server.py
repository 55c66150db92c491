"""The plugin process, driven as Dify drives it, against the real Xinference testbed.

Model types are read from provider/xinference.yaml when the tests are collected: every
declared type has its tests run; an undeclared one shows up as skipped with the reason.
"""

import json
from pathlib import Path

import pytest

from tests.runtime.conftest import plugin_under_test
from tests.runtime.harness import llm_text, unused_port

pytestmark = pytest.mark.integration

DECLARED_TYPES = plugin_under_test().supported_model_types
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
# For each Dify model type: a testbed model of another type, which validation must refuse.
WRONG_TYPE_ROLE = {"llm": "embedding", "text-embedding": "chat", "rerank": "chat", "speech2text": "chat", "tts": "chat"}


def when_declared(model_type: str):
    return pytest.mark.skipif(
        model_type not in DECLARED_TYPES, reason=f"provider/xinference.yaml does not declare {model_type}"
    )


def credentials(testbed: dict, role: str = "chat", **overrides) -> dict:
    return {
        "server_url": testbed["url"],
        "model_uid": testbed["uids"][role],
        "api_key": testbed.get("api_key") or "",
        **overrides,
    }


def chat(plugin, testbed, stream: bool, tools=None, text="Say something."):
    return plugin.request(
        "invoke_llm",
        "llm",
        "tiny",
        credentials(testbed),
        prompt_messages=[{"role": "user", "content": text}],
        model_parameters={"temperature": 0},
        tools=tools,
        stop=None,
        stream=stream,
    )


# ---- validation -----------------------------------------------------------------------


def test_validating_the_chat_model_succeeds(plugin, testbed):
    result = plugin.request("validate_model_credentials", "llm", "tiny", credentials(testbed))
    assert result.ok, result.error
    assert result.last["result"] is True


def test_validating_an_unknown_uid_lists_the_running_models(plugin, testbed):
    result = plugin.request(
        "validate_model_credentials", "llm", "tiny", credentials(testbed, model_uid="no-such-model")
    )
    assert result.error["error_type"] == "CredentialsValidateFailedError"
    assert "no-such-model" in result.error["message"]
    assert testbed["uids"]["chat"] in result.error["message"]


@pytest.mark.parametrize("model_type", DECLARED_TYPES)
def test_validating_a_model_of_another_type_is_refused(plugin, testbed, model_type):
    role = WRONG_TYPE_ROLE[model_type]
    result = plugin.request("validate_model_credentials", model_type, "tiny", credentials(testbed, role))
    assert result.error["error_type"] == "CredentialsValidateFailedError"
    assert testbed["uids"][role] in result.error["message"]


def test_validating_a_closed_port_says_the_server_cannot_be_reached(plugin, testbed):
    server_url = f"http://127.0.0.1:{unused_port()}"
    result = plugin.request(
        "validate_model_credentials",
        "llm",
        "tiny",
        credentials(testbed, server_url=server_url, max_retries="0"),
    )
    assert result.error["error_type"] == "CredentialsValidateFailedError"
    assert server_url in result.error["message"]


# ---- LLM --------------------------------------------------------------------------------


def test_the_schema_comes_from_the_servers_description(plugin, testbed):
    result = plugin.request("get_ai_model_schemas", "llm", "tiny", credentials(testbed))
    assert result.ok, result.error
    schema = result.last["model_schema"]
    assert schema["model_properties"]["context_size"] == 4096
    assert "tool-call" in schema["features"]


def test_a_streamed_chat_gives_the_models_answer_in_several_chunks(plugin, testbed):
    result = chat(plugin, testbed, stream=True)
    assert result.ok, result.error
    assert llm_text(result.chunks) == testbed["chat_answer"]
    assert len(result.chunks) > 2
    assert result.last["delta"]["finish_reason"] == "stop"
    assert result.last["delta"]["usage"]["completion_tokens"] > 0


def test_a_blocking_chat_gives_the_models_answer(plugin, testbed):
    result = chat(plugin, testbed, stream=False)
    assert result.ok, result.error
    assert llm_text(result.chunks) == testbed["chat_answer"]


def test_a_blocking_chat_with_tools_returns_the_parsed_tool_call(plugin, testbed):
    result = chat(plugin, testbed, stream=False, tools=[WEATHER_TOOL], text="What is the weather in Paris?")
    assert result.ok, result.error
    [call] = result.last["delta"]["message"]["tool_calls"]
    assert call["function"]["name"] == testbed["tool_answer"]["name"]
    assert json.loads(call["function"]["arguments"]) == testbed["tool_answer"]["arguments"]


def test_counting_prompt_tokens(plugin, testbed):
    result = plugin.request(
        "get_llm_num_tokens",
        "llm",
        "tiny",
        credentials(testbed),
        prompt_messages=[{"role": "user", "content": "How many tokens is this?"}],
        tools=None,
    )
    assert result.ok, result.error
    assert result.last["num_tokens"] > 0


# ---- the other model types ----------------------------------------------------------------


@when_declared("text-embedding")
def test_embedding_texts_gives_one_vector_per_text(plugin, testbed):
    texts = ["hello world", "the weather in Paris", "a third text"]
    result = plugin.request(
        "invoke_text_embedding",
        "text-embedding",
        "tiny-embed",
        credentials(testbed, "embedding"),
        texts=texts,
        input_type="document",
    )
    assert result.ok, result.error
    embeddings = result.last["embeddings"]
    assert len(embeddings) == len(texts)
    assert {len(vector) for vector in embeddings} == {384}
    assert embeddings[0] != embeddings[1]


@when_declared("text-embedding")
def test_counting_embedding_tokens_gives_one_count_per_text(plugin, testbed):
    result = plugin.request(
        "get_text_embedding_num_tokens",
        "text-embedding",
        "tiny-embed",
        credentials(testbed, "embedding"),
        texts=["hi", "a much longer text than the first one"],
    )
    assert result.ok, result.error
    short, long = result.last["num_tokens"]
    assert 0 < short < long


@when_declared("rerank")
def test_rerank_returns_the_top_documents_by_score(plugin, testbed):
    docs = ["It is sunny in Paris.", "Bananas are yellow.", "Rain is expected tomorrow."]
    result = plugin.request(
        "invoke_rerank",
        "rerank",
        "tiny-rerank",
        credentials(testbed, "rerank"),
        query="What is the weather like?",
        docs=docs,
        score_threshold=None,
        top_n=2,
    )
    assert result.ok, result.error
    ranked = result.last["docs"]
    assert len(ranked) == 2
    assert [doc["text"] for doc in ranked] == [docs[doc["index"]] for doc in ranked]
    assert ranked[0]["score"] >= ranked[1]["score"]


@when_declared("speech2text")
def test_speech_to_text_transcribes_the_clip(plugin, testbed):
    audio = Path(testbed["clip"]).read_bytes()
    result = plugin.request(
        "invoke_speech2text",
        "speech2text",
        "tiny-whisper",
        credentials(testbed, "speech2text"),
        file=audio.hex(),  # the daemon sends files hex-encoded
    )
    assert result.ok, result.error
    assert result.last["result"] == testbed["transcription"]

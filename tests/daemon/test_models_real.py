"""Every model type the testbed serves, through the real daemon against real Xinference
4.1 (scripts/testbed): the answers must be the server's own, errors its own words.
TTS is not in the testbed (no tiny TTS model): it runs against the stub only."""

import json
from pathlib import Path

import pytest

from tests.daemon.conftest import SECRETS_USED
from tests.runtime.harness import unused_port

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def real(testbed):
    if testbed.get("api_key"):
        SECRETS_USED.add(testbed["api_key"])
    return testbed


def credentials(testbed: dict, role: str = "chat", **overrides) -> dict:
    return {"server_url": testbed["url"], "model_uid": testbed["uids"][role], "api_key": testbed.get("api_key") or "",
            "invoke_timeout": "120", "max_retries": "1", **overrides}  # fmt: skip


def chat(call, testbed, stream: bool, tools=(), text="Say something."):
    return call(
        "llm/invoke", "llm", credentials(testbed), prompt_messages=[{"role": "user", "content": text}],
        model_parameters={"temperature": 0}, tools=list(tools), stop=[], stream=stream,
    )  # fmt: skip


def text_of(chunks) -> str:
    return "".join(chunk["delta"]["message"].get("content") or "" for chunk in chunks)


ROLES = [("llm", "chat"), ("text-embedding", "embedding"), ("rerank", "rerank"), ("speech2text", "speech2text")]


@pytest.mark.parametrize(("model_type", "role"), ROLES, ids=[kind for kind, _ in ROLES])
def test_each_real_model_validates_and_has_a_schema(call, real, model_type, role):
    validated = call("model/validate_model_credentials", model_type, credentials(real, role))
    schema = call("model/schema", model_type, credentials(real, role))

    assert validated.ok, validated.error
    assert schema.ok, schema.error
    assert schema.chunks[-1]["model_schema"]["model_type"] == model_type


def test_an_unknown_uid_is_refused_by_the_real_server(call, real):
    result = call("model/validate_model_credentials", "llm", credentials(real, model_uid="no-such-model"))

    assert result.error_type == "CredentialsValidateFailedError"
    assert "no-such-model" in result.error_message


def test_a_real_server_that_is_gone_is_named(call, real):
    down = f"http://127.0.0.1:{unused_port()}"
    result = call("model/validate_model_credentials", "llm", credentials(real, server_url=down))

    assert result.error_type == "CredentialsValidateFailedError"
    assert down.removeprefix("http://") in result.error_message


@pytest.mark.parametrize("stream", [True, False], ids=["streaming", "blocking"])
def test_chat_gives_the_models_answer_with_usage_last(call, real, stream):
    result = chat(call, real, stream)

    assert result.ok, result.error
    assert text_of(result.chunks) == real["chat_answer"]
    assert result.chunks[-1]["delta"]["usage"]["completion_tokens"] > 0


@pytest.mark.parametrize("stream", [True, False], ids=["streaming", "blocking"])
def test_chat_with_tools_returns_the_models_tool_call(call, real, stream):
    # Streamed, as Dify's function-calling agent asks: Xinference 1.10-2.1 refuse stream + tools
    # (the plugin answers blocking as chunks), 4.1.0's transformers engine streams the call as text.
    result = chat(call, real, stream=stream, tools=[WEATHER_TOOL], text="What is the weather in Paris?")

    assert result.ok, result.error
    if stream:
        assert result.chunks[-1]["delta"]["finish_reason"] == "tool_calls"
    [tool_call] = result.chunks[-1]["delta"]["message"]["tool_calls"]
    assert tool_call["function"]["name"] == real["tool_answer"]["name"]
    assert json.loads(tool_call["function"]["arguments"]) == real["tool_answer"]["arguments"]


def test_llm_num_tokens(call, real):
    result = call("llm/num_tokens", "llm", credentials(real), prompt_messages=[{"role": "user", "content": "Count me."}],
                  tools=[])  # fmt: skip

    assert result.ok, result.error
    assert result.chunks[-1]["num_tokens"] > 0


def test_a_chat_with_an_embedding_model_is_refused_naming_it(call, real):
    result = call("llm/invoke", "llm", credentials(real, "embedding"), prompt_messages=[{"role": "user", "content": "Hi"}],
                  model_parameters={}, tools=[], stop=[], stream=True)  # fmt: skip

    assert result.error_type == "InvokeBadRequestError"
    assert real["uids"]["embedding"] in result.error_message


def test_embeddings_of_max_chunks_texts(call, real):
    schema = call("model/schema", "text-embedding", credentials(real, "embedding")).chunks[-1]["model_schema"]
    max_chunks = schema["model_properties"]["max_chunks"]
    texts = [f"sentence {number} about the weather" for number in range(max_chunks)]

    result = call("text_embedding/invoke", "text-embedding", credentials(real, "embedding"), texts=texts,
                  input_type="document")  # fmt: skip

    assert result.ok, result.error
    assert len(result.chunks[-1]["embeddings"]) == max_chunks
    print(f"\nreal 384-dimension model: max_chunks {max_chunks}, longest line {result.longest_line_bytes:,} bytes")


def test_rerank(call, real):
    docs = ["It is sunny in Paris.", "Bananas are yellow.", "Rain is expected tomorrow."]
    result = call("rerank/invoke", "rerank", credentials(real, "rerank"), query="What is the weather like?", docs=docs,
                  score_threshold=0.0, top_n=2)  # fmt: skip

    assert result.ok, result.error
    ranked = result.chunks[-1]["docs"]
    assert len(ranked) == 2 and [doc["text"] for doc in ranked] == [docs[doc["index"]] for doc in ranked]


def test_speech_to_text(call, real):
    audio = Path(real["clip"]).read_bytes()
    result = call("speech2text/invoke", "speech2text", credentials(real, "speech2text"), file=audio.hex())

    assert result.ok, result.error
    assert result.chunks[-1]["result"] == real["transcription"]

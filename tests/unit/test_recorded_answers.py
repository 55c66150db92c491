"""The plugin against answers recorded from a real Xinference server (tests/fixtures/).

The other unit tests use shapes written from the API notes; these replay what a real
server actually sent (refresh with: scripts/testbed run -- .venv/bin/python tests/fixtures/record.py).
"""

import json
import struct
from pathlib import Path

import pytest
import responses
from dify_plugin.entities.model import ModelPropertyKey
from dify_plugin.entities.model.message import PromptMessageTool, UserPromptMessage
from dify_plugin.errors.model import CredentialsValidateFailedError, InvokeBadRequestError, InvokeError

from models.llm.llm import XinferenceLargeLanguageModel
from models.rerank.rerank import XinferenceRerankModel
from models.text_embedding.text_embedding import XinferenceTextEmbeddingModel
from tests.unit.xinference import servers_words

SERVER = "http://recorded.test:9997"
RECORDINGS = sorted((Path(__file__).resolve().parent.parent / "fixtures").glob("xinference-*"))
WEATHER_TOOL = PromptMessageTool(
    name="get_weather",
    description="Current weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def test_recordings_exist():
    assert RECORDINGS, "no recorded Xinference answers in tests/fixtures/"


@pytest.fixture(params=RECORDINGS, ids=[folder.name for folder in RECORDINGS])
def recorded(request):
    folder: Path = request.param
    meta = json.loads((folder / "_meta.json").read_text())

    def load(name: str) -> dict:
        return json.loads((folder / f"{name}.json").read_text())

    def serve(name: str, path: str | None = None) -> dict:
        record = load(name)
        body = record["body"]
        payload = json.dumps(body) if not isinstance(body, str) else body
        responses.add(
            record["request"]["method"],
            SERVER + (path or record["request"]["path"]),
            body=payload,
            status=record["status"],
            content_type=record["content_type"] or "application/json",
        )
        return record

    return meta, load, serve


def credentials(meta: dict, role: str) -> dict:
    return {"server_url": SERVER, "model_uid": meta["uids"][role]}


def text_of(chunks) -> str:
    return "".join(chunk.delta.message.content or "" for chunk in chunks)


def stream_events(record: dict) -> list[dict]:
    return [
        json.loads(line[len("data: ") :])
        for line in record["body"].splitlines()
        if line.startswith("data: {")
    ]


@responses.activate
def test_recorded_llm_description_gives_the_schema(recorded):
    meta, load, serve = recorded
    described = serve("describe_llm")["body"]
    schema = XinferenceLargeLanguageModel(model_schemas=[]).get_customizable_model_schema("m", credentials(meta, "chat"))
    assert schema.model_properties[ModelPropertyKey.CONTEXT_SIZE] == described["context_length"]
    assert schema.model_properties[ModelPropertyKey.MODE] == "chat"


@responses.activate
def test_recorded_blocking_chat(recorded):
    meta, load, serve = recorded
    serve("describe_llm")
    answer = serve("chat")["body"]
    [result] = XinferenceLargeLanguageModel(model_schemas=[]).invoke(
        "m", credentials(meta, "chat"), [UserPromptMessage(content="Say something.")], {}, stream=False
    )
    assert result.delta.message.content == answer["choices"][0]["message"]["content"]
    assert result.delta.usage.completion_tokens == answer["usage"]["completion_tokens"]


@responses.activate
def test_recorded_stream_gives_the_same_text_and_the_last_usage(recorded):
    meta, load, serve = recorded
    serve("describe_llm")
    record = serve("chat_stream")
    events = stream_events(record)
    expected_text = "".join((e["choices"][0]["delta"].get("content") or "") for e in events if e.get("choices"))
    expected_usage = [e["usage"] for e in events if e.get("usage")][-1]
    chunks = list(
        XinferenceLargeLanguageModel(model_schemas=[]).invoke(
            "m", credentials(meta, "chat"), [UserPromptMessage(content="Say something.")], {}, stream=True
        )
    )
    assert text_of(chunks) == expected_text
    assert chunks[-1].delta.usage.completion_tokens == expected_usage["completion_tokens"]
    assert chunks[-1].delta.finish_reason == "stop"


@responses.activate
def test_recorded_tool_calls_blocking_and_streamed(recorded):
    meta, load, serve = recorded
    serve("describe_llm")
    blocking = serve("chat_tools")["body"]["choices"][0]["message"]["tool_calls"][0]["function"]
    if serve("chat_tools_stream")["status"] == 400:  # 1.10-2.1 refuse stream + tools: asked again, blocking
        serve("chat_tools")
    model = XinferenceLargeLanguageModel(model_schemas=[])
    question = [UserPromptMessage(content="What is the weather in Paris?")]
    [result] = model.invoke("m", credentials(meta, "chat"), question, {}, tools=[WEATHER_TOOL], stream=False)
    streamed = list(model.invoke("m", credentials(meta, "chat"), question, {}, tools=[WEATHER_TOOL], stream=True))
    for call in (result.delta.message.tool_calls[0], streamed[-1].delta.message.tool_calls[0]):
        assert call.function.name == blocking["name"]
        assert json.loads(call.function.arguments) == json.loads(blocking["arguments"])


@responses.activate
def test_recorded_completions_blocking_and_streamed(recorded):
    meta, load, serve = recorded
    serve("describe_generate")
    answer = serve("completions")["body"]
    serve("completions_stream")
    model = XinferenceLargeLanguageModel(model_schemas=[])
    prompt = [UserPromptMessage(content="Once upon")]
    [result] = model.invoke("m", credentials(meta, "generate"), prompt, {"max_tokens": 8}, stream=False)
    streamed = list(model.invoke("m", credentials(meta, "generate"), prompt, {"max_tokens": 8}, stream=True))
    assert result.delta.message.content == answer["choices"][0]["text"]
    assert text_of(streamed) == answer["choices"][0]["text"]


@responses.activate
def test_recorded_errors_reach_dify_with_the_servers_words(recorded):
    meta, load, serve = recorded
    serve("describe_llm")
    model = XinferenceLargeLanguageModel(model_schemas=[])
    question = [UserPromptMessage(content="Say something.")]
    for name, error_type in (("chat_unknown_uid", InvokeBadRequestError), ("chat_invalid_top_k", InvokeBadRequestError)):
        record = serve(name)
        words = record["body"]["detail"] if isinstance(record["body"], dict) else record["body"]
        with pytest.raises(error_type) as raised:
            list(model.invoke("m", credentials(meta, "chat"), question, {}, stream=False))
        assert servers_words(words).strip()[:60] in str(raised.value)
        responses.reset()
        serve("describe_llm")
    serve("chat_stream_on_embedding_model", path="/v1/chat/completions")
    with pytest.raises(InvokeError):
        list(model.invoke("m", credentials(meta, "chat"), question, {}, stream=True))


@responses.activate
def test_recorded_unknown_uid_validation_lists_the_running_models(recorded):
    meta, load, serve = recorded
    serve("describe_unknown_uid")
    listed = serve("list_models")["body"]["data"]
    settings = {"server_url": SERVER, "model_uid": "no-such-model"}
    with pytest.raises(CredentialsValidateFailedError) as raised:
        XinferenceLargeLanguageModel(model_schemas=[]).validate_credentials("m", settings)
    for entry in listed:
        assert entry["id"] in str(raised.value)
    # The server's words without its actor prefix, a full stop, then what runs there.
    assert str(raised.value).startswith(
        "Xinference has no running model with UID 'no-such-model' (400): "
        f"Model not found in the model list, uid: no-such-model. Models running on {SERVER}: "
    )


@responses.activate
def test_recorded_embeddings(recorded):
    meta, load, serve = recorded
    described = serve("describe_embedding")["body"]
    answer = serve("embeddings")["body"]
    model = XinferenceTextEmbeddingModel(model_schemas=[])
    result = model.invoke("m", credentials(meta, "embedding"), ["first text", "second text"])
    # The same float32 values, at float32 precision (9 significant digits).
    recorded_vectors = [item["embedding"] for item in sorted(answer["data"], key=lambda i: i["index"])]
    assert [_float32(vector) for vector in result.embeddings] == [_float32(vector) for vector in recorded_vectors]
    schema = model.get_customizable_model_schema("m", credentials(meta, "embedding"))
    assert schema.model_properties[ModelPropertyKey.CONTEXT_SIZE] == described["max_tokens"]


@responses.activate
def test_recorded_rerank(recorded):
    meta, load, serve = recorded
    serve("describe_rerank")
    record = serve("rerank")
    documents = record["request"]["body"]["documents"]
    result = XinferenceRerankModel(model_schemas=[]).invoke(
        "m", credentials(meta, "rerank"), record["request"]["body"]["query"], documents
    )
    assert [doc.index for doc in result.docs] == [item["index"] for item in record["body"]["results"]]
    assert [doc.text for doc in result.docs] == [documents[item["index"]] for item in record["body"]["results"]]


def _float32(values: list[float]) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)

"""What every model type owes Dify, the same for each: one contract, run on LLM, text
embedding, rerank, speech-to-text and text-to-speech through their public entry points.

- `validate_credentials` raises only `CredentialsValidateFailedError`, in words that say
  what to fix (the field, the UID and what runs instead, the URL, the key, the type);
- `invoke` raises only Dify's five `InvokeError` classes, chosen by what the server said,
  with the server's own words (Dify's load balancer acts on the class);
- no piece of the API key in any error or log line, even when the server echoes it.

What only one model type does (voices, batches, tool calls, ...) stays in its own file.
"""

import io
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import responses
from dify_plugin.entities.model.message import UserPromptMessage
from dify_plugin.errors.model import (
    CredentialsValidateFailedError,
    InvokeAuthorizationError,
    InvokeBadRequestError,
    InvokeConnectionError,
    InvokeRateLimitError,
    InvokeServerUnavailableError,
)

from models.llm.llm import XinferenceLargeLanguageModel
from models.rerank.rerank import XinferenceRerankModel
from models.speech2text.speech2text import XinferenceSpeech2TextModel
from models.text_embedding.text_embedding import XinferenceTextEmbeddingModel
from models.tts.tts import XinferenceText2SpeechModel
from tests.unit.xinference import (
    SERVER,
    UID,
    assert_no_key_piece,
    chat_answer,
    closed_port,
    credentials,
    describe_embedding,
    describe_llm,
    describe_rerank,
    serve_answer,
)

DIFY_INVOKE_ERRORS = (InvokeAuthorizationError, InvokeBadRequestError, InvokeConnectionError, InvokeRateLimitError,
                      InvokeServerUnavailableError)  # fmt: skip
DESCRIBE = f"{SERVER}/v1/models/{UID}"
RUNNING_MODELS = f"{SERVER}/v1/models"


def describe_audio(ability: str) -> dict:
    return {"model_type": "audio", "model_name": "audio-model", "model_family": "ChatTTS", "model_ability": [ability]}


def transcribe(model, creds) -> Any:
    file = io.BytesIO(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    file.name = "recording.wav"
    return model.invoke("my-model", creds, file)


@dataclass(frozen=True)
class ModelType:
    """One Dify model type as the contract drives it."""

    name: str
    model_class: type
    description: dict  # what Xinference describes for a model of this type
    endpoint: str  # where its invoke (and its validation's test call) posts
    good_answer: Callable[[], None]  # registers one answer that succeeds at `endpoint`
    run: Callable[[Any, dict], Any]  # one whole invoke, streams consumed
    not_for: str  # Xinference's words when the UID is a model of another type
    other_type: tuple[dict, str]  # a description of another type, and how the plugin names it
    dify_name: str  # how the plugin names the Dify model type

    def model(self):
        return self.model_class(model_schemas=[])

    def invoke(self, creds: dict) -> Any:
        return self.run(self.model(), creds)

    def validate(self, creds: dict) -> None:
        self.model().validate_credentials("my-model", creds)


MODEL_TYPES = [
    ModelType(
        name="llm",
        model_class=XinferenceLargeLanguageModel,
        description=describe_llm(),
        endpoint=f"{SERVER}/v1/chat/completions",
        good_answer=lambda: responses.post(f"{SERVER}/v1/chat/completions", json=chat_answer()),
        run=lambda model, creds: list(model.invoke("my-model", creds, [UserPromptMessage(content="Hi")], {}, stream=False)),
        not_for="not for chat",
        other_type=(describe_embedding(), "an embedding"),
        dify_name="an LLM",
    ),
    ModelType(
        name="text-embedding",
        model_class=XinferenceTextEmbeddingModel,
        description={**describe_embedding(), "model_engine": "sentence_transformers"},
        endpoint=f"{SERVER}/v1/embeddings",
        good_answer=lambda: responses.post(f"{SERVER}/v1/embeddings", json={
            "object": "list", "model": UID, "data": [{"index": 0, "object": "embedding", "embedding": [0.5, 0.25]}],
            "usage": {"prompt_tokens": 1, "total_tokens": 1}}),  # fmt: skip
        run=lambda model, creds: model.invoke("my-model", creds, ["hello"]),
        not_for="not for creating embedding",
        other_type=(describe_llm(), "an LLM"),
        dify_name="a text embedding",
    ),
    ModelType(
        name="rerank",
        model_class=XinferenceRerankModel,
        description=describe_rerank(),
        endpoint=f"{SERVER}/v1/rerank",
        good_answer=lambda: responses.post(f"{SERVER}/v1/rerank", json={
            "id": "r", "results": [{"index": 0, "relevance_score": 0.9}, {"index": 1, "relevance_score": 0.1}]}),  # fmt: skip
        run=lambda model, creds: model.invoke("my-model", creds, "what is xinference?", ["a", "b"], None, None),
        not_for="not for reranking",
        other_type=(describe_embedding(), "an embedding"),
        dify_name="a rerank",
    ),
    ModelType(
        name="speech2text",
        model_class=XinferenceSpeech2TextModel,
        description=describe_audio("audio2text"),
        endpoint=f"{SERVER}/v1/audio/transcriptions",
        good_answer=lambda: responses.post(f"{SERVER}/v1/audio/transcriptions", json={"text": "Hello."}),
        run=transcribe,
        not_for="not for creating transcriptions",
        other_type=(describe_llm(), "an LLM"),
        dify_name="a speech-to-text",
    ),
    ModelType(
        name="tts",
        model_class=XinferenceText2SpeechModel,
        description=describe_audio("text2audio"),
        endpoint=f"{SERVER}/v1/audio/speech",
        good_answer=lambda: responses.post(f"{SERVER}/v1/audio/speech", body=b"ID3 audio", content_type="audio/mpeg"),
        run=lambda model, creds: b"".join(model.invoke("my-model", "tenant-1", creds, "Hello world.", "")),
        not_for="not for creating speech",
        other_type=(describe_llm(), "an LLM"),
        dify_name="a text-to-speech",
    ),
]

each_model_type = pytest.mark.parametrize("kind", MODEL_TYPES, ids=[kind.name for kind in MODEL_TYPES])


def serve_describe(kind: ModelType) -> None:
    responses.get(DESCRIBE, json=kind.description)


def posted(kind: ModelType) -> list:
    return [call for call in responses.calls if call.request.url == kind.endpoint]


# ---- validation: only CredentialsValidateFailedError, saying what to fix --------------------------


@each_model_type
@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("server_url", "", "server_url is required"),
        ("server_url", "ftp://host:9997", "server_url must start with http"),
        ("server_url", "http://[::1", "server_url is not a valid URL"),
        ("model_uid", "", "model_uid is required"),
        ("model_uid", "a/b", "model_uid must not contain"),
        ("invoke_timeout", "-5", "invoke_timeout must be a positive number"),
        ("max_retries", "many", "max_retries must be a whole number"),
    ],
)
@responses.activate
def test_validation_names_an_unusable_field_before_asking_the_server(kind, field, value, words):
    with pytest.raises(CredentialsValidateFailedError, match=words) as raised:
        kind.validate(credentials(**{field: value}))
    assert type(raised.value) is CredentialsValidateFailedError
    assert len(responses.calls) == 0


@each_model_type
@responses.activate
def test_validation_of_an_unknown_uid_lists_the_running_models(kind):
    responses.get(DESCRIBE, status=400, json={"detail": f"Model not found in the model list, uid: {UID}"})
    responses.get(RUNNING_MODELS, json={"object": "list", "data": [{"id": "bge-m3"}, {"id": "qwen3"}]})
    with pytest.raises(CredentialsValidateFailedError, match=f"no running model with UID '{UID}'.*bge-m3, qwen3"):
        kind.validate(credentials())


@each_model_type
def test_validation_with_the_server_down_names_it_and_the_field_to_check(kind):
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(CredentialsValidateFailedError, match=f"Cannot reach Xinference at {url}.*connection refused") as raised:
        kind.validate(credentials(server_url=url, max_retries="0"))
    assert str(raised.value).endswith("Check the server URL.")


@each_model_type
@responses.activate
def test_validation_with_a_wrong_key_says_the_key_was_refused_in_the_servers_words(kind):
    responses.get(DESCRIBE, status=401, json={"detail": "Could not validate credentials"})
    with pytest.raises(CredentialsValidateFailedError, match="refused the credentials.*Could not validate credentials"):
        kind.validate(credentials(api_key="xf-wrong-key-0123456789"))


@each_model_type
@responses.activate
def test_validation_of_a_model_of_another_type_names_both_types(kind):
    description, other_name = kind.other_type
    responses.get(DESCRIBE, json=description)
    with pytest.raises(CredentialsValidateFailedError, match=f"is {other_name} model on Xinference.*as {kind.dify_name} model"):
        kind.validate(credentials())
    assert posted(kind) == []


@each_model_type
@responses.activate
def test_validation_makes_a_real_call_and_reports_its_failure_in_the_servers_words(kind):
    serve_describe(kind)
    responses.post(kind.endpoint, status=500, json={"detail": "[address=127.0.0.1:41227, pid=7] CUDA out of memory"})
    with pytest.raises(CredentialsValidateFailedError, match="CUDA out of memory"):
        kind.validate(credentials(max_retries="0"))
    assert len(posted(kind)) == 1


@each_model_type
@responses.activate
def test_validation_of_a_model_still_loading_does_not_blame_the_server_url(kind):
    responses.get(DESCRIBE, status=503, headers={"Retry-After": "30"}, json={"detail": "Model is loading, please retry later"})
    with pytest.raises(CredentialsValidateFailedError, match="Model is loading") as raised:
        kind.validate(credentials(max_retries="0"))
    assert "server URL" not in str(raised.value)


# ---- invoke: Dify's five classes, chosen by what the server said, in its words --------------------


@each_model_type
@pytest.mark.parametrize(
    ("status", "body", "dify_class", "words"),
    [
        (401, {"detail": "Not authenticated"}, InvokeAuthorizationError, "refused the credentials.*Not authenticated"),
        (403, {"detail": f"API key does not have access to model: {UID}"}, InvokeAuthorizationError, "does not have access"),
        (400, {"detail": f"Model not found in the model list, uid: {UID}"}, InvokeBadRequestError, f"no running model with UID '{UID}'"),
        (404, {"detail": f"Model not found in the model list, uid: {UID}. Available model uids: ['bge']"},
         InvokeBadRequestError, f"no running model with UID '{UID}'.*Available model uids: \\['bge'\\]"),
        (422, {"detail": [{"loc": ["body", "model"], "msg": "Field required", "type": "missing"}]},
         InvokeBadRequestError, "body.model: Field required"),
        (429, {"detail": "Rate limit reached for the model."}, InvokeRateLimitError, "Rate limit reached"),
        (500, "Internal Server Error: 1 validation error for CreateRequest\ninput\n  field required",
         InvokeBadRequestError, "rejected the request.*1 validation error for CreateRequest"),
        (500, "Internal Server Error: boom", InvokeServerUnavailableError, "Internal Server Error: boom"),
        (500, {"detail": "[address=127.0.0.1:41227, pid=7] CUDA out of memory"}, InvokeServerUnavailableError, "CUDA out of memory"),
        (503, "Service Unavailable", InvokeConnectionError, "cannot take this request right now.*Service Unavailable"),
    ],
    ids=["401", "403", "400-unknown-uid", "404-unknown-uid", "422", "429", "500-invalid-body", "500-plain", "500-json", "503"],
)  # fmt: skip
@responses.activate
def test_each_server_answer_reaches_dify_as_its_class_with_the_servers_words(kind, status, body, dify_class, words):
    serve_describe(kind)
    serve_answer("POST", kind.endpoint, status, body)
    with pytest.raises(dify_class, match=words) as raised:
        kind.invoke(credentials(max_retries="0"))
    assert type(raised.value) is dify_class  # Dify maps a plugin's error by its class name


@each_model_type
@responses.activate
def test_the_servers_words_for_a_model_of_another_type_are_a_bad_request(kind):
    serve_describe(kind)
    serve_answer("POST", kind.endpoint, 500, {"detail": f"[address=127.0.0.1:41227, pid=7] Model {UID} is {kind.not_for}."})
    with pytest.raises(InvokeBadRequestError, match=f"wrong model type.*{kind.not_for}"):
        kind.invoke(credentials(max_retries="0"))


@each_model_type
@responses.activate
def test_a_model_of_another_type_is_refused_naming_both_before_anything_is_sent(kind):
    description, other_name = kind.other_type
    responses.get(DESCRIBE, json=description)
    with pytest.raises(InvokeBadRequestError, match=f"is {other_name} model on Xinference.*as {kind.dify_name} model"):
        kind.invoke(credentials())
    assert posted(kind) == []


@each_model_type
@pytest.mark.parametrize(("field", "value"), [("server_url", "http://[::1"), ("invoke_timeout", "soon")])
@responses.activate
def test_an_unusable_field_at_invoke_time_is_a_bad_request_naming_it(kind, field, value):
    with pytest.raises(InvokeBadRequestError, match=field) as raised:
        kind.invoke(credentials(**{field: value}))
    assert type(raised.value) is InvokeBadRequestError
    assert len(responses.calls) == 0


@each_model_type
def test_the_server_down_is_a_connection_error_naming_the_url(kind):
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(InvokeConnectionError, match=f"Cannot reach Xinference at {url}.*connection refused"):
        kind.invoke(credentials(server_url=url, max_retries="0"))


@each_model_type
@responses.activate
def test_a_model_still_loading_is_waited_for_as_the_server_asks(kind):
    serve_describe(kind)
    responses.post(kind.endpoint, status=503, headers={"Retry-After": "0"}, json={"detail": "Model is loading, please retry later"})
    kind.good_answer()
    assert kind.invoke(credentials())
    assert len(posted(kind)) == 2


@each_model_type
@responses.activate
def test_the_model_is_described_once_then_each_invoke_is_one_request(kind):
    serve_describe(kind)
    kind.good_answer()
    kind.invoke(credentials())
    kind.invoke(credentials())
    assert [call.request.method for call in responses.calls] == ["GET", "POST", "POST"]


# ---- no piece of the API key, wherever the server echoes it -----------------------------------------


def echoing(key: str) -> list[tuple[str, int, dict | str]]:
    """Answers that repeat the key, as misconfigured proxies and some engines do: (where, status, body)."""
    return [
        ("describe", 401, {"detail": f"Invalid API key: {key}"}),
        ("describe", 400, {"detail": f"Model not found in the model list, uid: {UID} (key {key[:14]}…)"}),
        ("endpoint", 500, f"Internal Server Error: request headers {{'Authorization': 'Bearer {key}'}}"),
        ("endpoint", 429, {"detail": f"Rate limit reached for key {key[-16:]}"}),
        ("endpoint", 403, {"detail": f"API key {key[3:20]}... does not have access to model: {UID}"}),
    ]


@each_model_type
@pytest.mark.parametrize("echo", range(5), ids=["describe-401", "describe-400", "endpoint-500", "endpoint-429", "endpoint-403"])
@pytest.mark.parametrize("entry_point", ["invoke", "validate"])
@responses.activate
def test_no_piece_of_the_api_key_in_an_error_or_a_log_line(kind, echo, entry_point, caplog):
    key = "sk-" + secrets.token_hex(20)
    where, status, body = echoing(key)[echo]
    if where == "describe":
        serve_answer("GET", DESCRIBE, status, body)
    else:
        serve_describe(kind)
        serve_answer("POST", kind.endpoint, status, body)
    responses.get(RUNNING_MODELS, json={"object": "list", "data": [{"id": f"model-of-{key}"}]})
    caplog.set_level("DEBUG")

    with pytest.raises(Exception) as raised:
        (kind.invoke if entry_point == "invoke" else kind.validate)(credentials(api_key=key, max_retries="0"))

    expected = (CredentialsValidateFailedError,) if entry_point == "validate" else DIFY_INVOKE_ERRORS
    assert type(raised.value) in expected, raised.value
    assert_no_key_piece(raised.value, key)
    logged = "\n".join(record.getMessage() + (record.exc_text or "") for record in caplog.records)
    assert not [key[start : start + 8] for start in range(len(key) - 7) if key[start : start + 8] in logged]
    assert f"Bearer {key}" in {call.request.headers.get("Authorization") for call in responses.calls}  # the key was used

"""Every model type through the daemon against the stub server: validation, schema,
embeddings, rerank, speech-to-text, text-to-speech and its voices."""

import io
import secrets
import wave

import pytest

from tests.daemon.conftest import SECRETS_USED, stub_credentials
from tests.daemon.stub_models import EMBEDDING_DIMENSIONS, RERANK_UID, SPEECH, TRANSCRIPT, TTS_UID, WHISPER_UID
from tests.runtime.harness import unused_port
from tests.runtime.stub_xinference import CHAT_UID

MODEL_TYPES = [("llm", CHAT_UID), ("text-embedding", "stub-embed-384"), ("rerank", RERANK_UID),
               ("speech2text", WHISPER_UID), ("tts", TTS_UID)]  # fmt: skip


# ---- validation -----------------------------------------------------------------------


@pytest.mark.parametrize(("model_type", "uid"), MODEL_TYPES, ids=[kind for kind, _ in MODEL_TYPES])
def test_good_credentials_validate(call, stub, model_type, uid):
    result = call("model/validate_model_credentials", model_type, stub_credentials(stub, uid))

    assert result.ok, result.error
    assert result.chunks[-1]["result"] is True


def test_an_unknown_uid_is_refused_naming_it_and_what_runs(call, stub):
    result = call("model/validate_model_credentials", "llm", stub_credentials(stub, "no-such-model"))

    assert result.error_type == "CredentialsValidateFailedError"
    assert "no-such-model" in result.error_message
    assert CHAT_UID in result.error_message  # the running models it could have meant


def test_a_bad_api_key_is_refused_in_xinferences_words(call, stub):
    wrong_key = "xf-" + secrets.token_hex(24)
    SECRETS_USED.add(wrong_key)
    result = call("model/validate_model_credentials", "llm", stub_credentials(stub, CHAT_UID, api_key=wrong_key))

    assert result.error_type == "CredentialsValidateFailedError"
    assert "Could not validate credentials" in result.error_message
    assert wrong_key[:12] not in result.error_message and wrong_key[-12:] not in result.error_message


def test_a_server_that_is_down_is_named(call, stub):
    down = f"http://127.0.0.1:{unused_port()}"
    result = call("model/validate_model_credentials", "llm", {**stub_credentials(stub, CHAT_UID), "server_url": down})

    assert result.error_type == "CredentialsValidateFailedError"
    assert down.removeprefix("http://") in result.error_message


def test_the_wrong_model_type_is_refused(call, stub):
    result = call("model/validate_model_credentials", "rerank", stub_credentials(stub, CHAT_UID))

    assert result.error_type == "CredentialsValidateFailedError"
    assert "rerank" in result.error_message.lower()


# ---- schemas --------------------------------------------------------------------------


@pytest.mark.parametrize(("model_type", "uid"), MODEL_TYPES, ids=[kind for kind, _ in MODEL_TYPES])
def test_each_model_type_has_a_schema_the_daemon_accepts(call, stub, model_type, uid):
    result = call("model/schema", model_type, stub_credentials(stub, uid))

    assert result.ok, result.error
    schema = result.chunks[-1]["model_schema"]
    assert schema["model_type"] == model_type and schema["model"] == "my-model"


# ---- embeddings -----------------------------------------------------------------------


def test_embeddings_come_back_in_order_with_usage(call, stub):
    texts = ["first text", "second text", "third text"]
    result = call("text_embedding/invoke", "text-embedding", stub_credentials(stub, "stub-embed-384"),
                  texts=texts, input_type="document")  # fmt: skip

    assert result.ok, result.error
    answer = result.chunks[-1]
    assert [len(vector) for vector in answer["embeddings"]] == [EMBEDDING_DIMENSIONS["stub-embed-384"]] * 3
    assert answer["usage"]["total_tokens"] == 6


def test_embedding_num_tokens(call, stub):
    result = call("text_embedding/num_tokens", "text-embedding", stub_credentials(stub, "stub-embed-384"),
                  texts=["one two three", "four"])  # fmt: skip

    assert result.ok, result.error
    counts = result.chunks[-1]["num_tokens"]
    assert len(counts) == 2 and counts[0] > counts[1] > 0


# ---- rerank ---------------------------------------------------------------------------


def test_rerank_orders_documents_and_applies_top_n(call, stub):
    docs = ["bananas are yellow", "paris is the capital of france", "the capital of germany is berlin"]
    result = call("rerank/invoke", "rerank", stub_credentials(stub, RERANK_UID),
                  query="what is the capital of france", docs=docs, score_threshold=0.0, top_n=2)  # fmt: skip

    assert result.ok, result.error
    ranked = result.chunks[-1]["docs"]
    assert [doc["index"] for doc in ranked] == [1, 2]
    assert ranked[0]["text"] == docs[1] and ranked[0]["score"] >= ranked[1]["score"]


def test_rerank_without_top_n_returns_every_document(call, stub):
    # Dify sends top_n None when a retrieval sets none; the daemon hands the plugin 0.
    docs = ["bananas are yellow", "paris is the capital of france", "the capital of germany is berlin"]
    result = call("rerank/invoke", "rerank", stub_credentials(stub, RERANK_UID),
                  query="what is the capital of france", docs=docs, score_threshold=None, top_n=None)  # fmt: skip

    assert result.ok, result.error
    assert sorted(doc["index"] for doc in result.chunks[-1]["docs"]) == [0, 1, 2]


# ---- audio ----------------------------------------------------------------------------


def wav_bytes() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as clip:
        clip.setnchannels(1)
        clip.setsampwidth(2)
        clip.setframerate(16000)
        clip.writeframes(b"\x00\x00" * 1600)
    return buffer.getvalue()


def test_speech_to_text_takes_the_hex_file_dify_sends(call, stub):
    result = call("speech2text/invoke", "speech2text", stub_credentials(stub, WHISPER_UID), file=wav_bytes().hex())

    assert result.ok, result.error
    assert result.chunks[-1]["result"] == TRANSCRIPT
    upload = [request for request in stub.requests if request["path"] == "/v1/audio/transcriptions"][-1]
    assert upload["headers"]["Content-Type"].startswith("multipart/form-data")


def default_voice(call, stub) -> str:
    schema = call("model/schema", "tts", stub_credentials(stub, TTS_UID)).chunks[-1]["model_schema"]
    return schema["model_properties"]["default_voice"]


def test_text_to_speech_streams_the_audio_as_hex(call, stub, client):
    # The daemon refuses an empty `voice` (Go `required`): Dify always sends one.
    result = call("tts/invoke", "tts", stub_credentials(stub, TTS_UID), tenant_id=client.tenant_id,
                  content_text="Hello there, how are you?", voice=default_voice(call, stub))  # fmt: skip

    assert result.ok, result.error
    audio = b"".join(bytes.fromhex(chunk["result"]) for chunk in result.chunks)
    assert audio == SPEECH


def test_text_to_speech_of_nothing_speakable_is_a_bad_request(call, stub, client):
    result = call("tts/invoke", "tts", stub_credentials(stub, TTS_UID), tenant_id=client.tenant_id,
                  content_text="...", voice=default_voice(call, stub))  # fmt: skip

    assert result.error_type == "InvokeBadRequestError"
    assert "no text to speak" in result.error_message


def test_voices_are_listed(call, stub):
    result = call("tts/model/voices", "tts", stub_credentials(stub, TTS_UID), language="en-US")

    assert result.ok, result.error
    voices = result.chunks[-1]["voices"]
    assert voices and all({"name", "value"} <= set(voice) for voice in voices)

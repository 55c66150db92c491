"""Credential parsing, the describe cache, errors as data and the shared executor: the floor every model type stands on."""

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import responses
from dify_plugin.entities.model.message import UserPromptMessage
from dify_plugin.errors.model import (
    InvokeAuthorizationError,
    InvokeBadRequestError,
    InvokeConnectionError,
    InvokeError,
    InvokeRateLimitError,
    InvokeServerUnavailableError,
)

from models.common import concurrency, memory, metadata
from models.common.credentials import CredentialsError, parse_settings
from models.common.errors import Reason, XinferenceError, detail_of, from_status, to_dify
from models.common.http import XinferenceClient
from models.common.redaction import redact
from models.llm.llm import XinferenceLargeLanguageModel
from models.text_embedding.text_embedding import XinferenceTextEmbeddingModel
from tests.conftest import PLUGIN_ROOT
from tests.unit.xinference import SERVER, UID, assert_no_key_piece, closed_port, credentials, describe_llm, dify_sees

DESCRIBE = f"{SERVER}/v1/models/{UID}"


@pytest.mark.parametrize(
    ("typed", "normalised"),
    [
        ("  http://10.0.0.5:9997  ", "http://10.0.0.5:9997"),
        ("http://10.0.0.5:9997/", "http://10.0.0.5:9997"),
        ("http://10.0.0.5:9997/v1", "http://10.0.0.5:9997"),
        ("https://gpu.example.org/xinference/v1/", "https://gpu.example.org/xinference"),
    ],
)
def test_server_url_is_normalised(typed, normalised):
    assert parse_settings(credentials(server_url=typed)).base_url == normalised


def test_uid_is_quoted_in_paths_and_defaults_apply():
    settings = parse_settings(credentials(model_uid=" qwen 2.5 "))
    assert settings.model_uid == "qwen 2.5"
    assert settings.quoted_uid == "qwen%202.5"
    assert (settings.invoke_timeout, settings.max_retries) == (60.0, 3)


@pytest.mark.parametrize("value", ["0", "-1", "abc", "inf", "nan"])
def test_timeout_must_be_a_positive_number(value):
    with pytest.raises(CredentialsError, match="invoke_timeout"):
        parse_settings(credentials(invoke_timeout=value))


def test_api_key_is_not_in_the_settings_repr():
    settings = parse_settings(credentials(api_key="xf-secret-value"))
    assert "xf-secret-value" not in repr(settings)
    assert settings.key_fingerprint and "xf-secret" not in settings.key_fingerprint


@responses.activate
def test_describe_cache_expires_after_its_ttl(monkeypatch):
    responses.get(DESCRIBE, json=describe_llm(context_length=4096))
    now = [1000.0]
    monkeypatch.setattr(memory.time, "monotonic", lambda: now[0])
    # Settings are parsed at the start of each call: each call's deadline follows the clock.
    assert metadata.describe(parse_settings(credentials())).context_length == 4096
    now[0] += memory.LEARNT_FOR - 1
    metadata.describe(parse_settings(credentials()))
    assert len(responses.calls) == 1
    now[0] += 2
    metadata.describe(parse_settings(credentials()))
    assert len(responses.calls) == 2


@responses.activate
def test_describe_cache_is_separate_per_api_key():
    responses.get(DESCRIBE, json=describe_llm())
    metadata.describe(parse_settings(credentials(api_key="xf-one")))
    metadata.describe(parse_settings(credentials(api_key="xf-two")))
    assert len(responses.calls) == 2


def test_a_slow_server_does_not_block_describing_a_model_on_another(monkeypatch):
    slow_started, release_slow = threading.Event(), threading.Event()
    finished: list[str] = []

    def fake_get_json(self, path):
        if self.settings.base_url.startswith("http://slow"):
            slow_started.set()
            release_slow.wait(10)
        return describe_llm()

    def describe_and_note(server: str) -> None:
        metadata.describe(parse_settings(credentials(server_url=f"http://{server}:1")))
        finished.append(server)

    monkeypatch.setattr(metadata.XinferenceClient, "get_json", fake_get_json)
    slow = threading.Thread(target=describe_and_note, args=("slow",))
    slow.start()
    assert slow_started.wait(10)
    fast = threading.Thread(target=describe_and_note, args=("fast",))
    fast.start()
    fast.join(10)  # with one lock for every server, "fast" would wait here for "slow"
    finished_while_slow_is_held = list(finished)
    release_slow.set()
    slow.join(10)
    assert finished_while_slow_is_held == ["fast"]
    assert finished == ["fast", "slow"]


def parked(threads: list[threading.Thread]) -> bool:
    """Each thread has finished or stands still inside the plugin's code (waiting for a lock)."""
    frames = sys._current_frames()
    for thread in threads:
        frame = frames.get(thread.ident) if thread.is_alive() else None
        if frame is not None and not frame.f_code.co_filename.startswith(str(PLUGIN_ROOT / "models")):
            return False
    return True


def test_concurrent_describes_of_one_model_make_one_request(monkeypatch):
    calls = []
    others: list[threading.Thread] = []
    first_asked, others_started = threading.Event(), threading.Event()

    def fake_get_json(self, path):
        calls.append(path)
        first_asked.set()
        # Answer the first request only once every other caller is waiting for it (or has asked
        # the server itself, which is what the per-key lock prevents).
        if len(calls) == 1 and others_started.wait(10):
            deadline = time.monotonic() + 10
            while not parked(others) and time.monotonic() < deadline:
                time.sleep(0.001)  # a poll of what the other threads are doing, not a guess at timing
        return describe_llm()

    monkeypatch.setattr(metadata.XinferenceClient, "get_json", fake_get_json)
    settings = parse_settings(credentials())
    first = threading.Thread(target=metadata.describe, args=(settings,))
    first.start()
    assert first_asked.wait(10)
    others.extend(threading.Thread(target=metadata.describe, args=(settings,)) for _ in range(4))
    for thread in others:
        thread.start()
    others_started.set()
    for thread in [first, *others]:
        thread.join(10)
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"detail": "Not authenticated"}', "Not authenticated"),
        (b'{"detail": [{"loc": ["body", "file"], "msg": "Field required", "type": "missing"}]}', "body.file: Field required"),
        (b"Internal Server Error: boom", "Internal Server Error: boom"),
        (b'{"error": "CUDA out of memory"}', "CUDA out of memory"),
    ],
)
def test_the_servers_words_are_taken_from_json_or_plain_text(body, words):
    assert detail_of(body) == words


# ---- hostile and careless credentials ----------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("server_url", "http://[::1", "server_url is not a valid URL"),
        ("server_url", "http://10.0.0.5:99999", "server_url"),
        ("server_url", "http://10.0.0.5:9997/x y", "spaces or control characters"),
        ("server_url", "ftp://10.0.0.5", "must start with http:// or https://"),
        ("server_url", {"not": "text"}, "must start with http:// or https://"),
        ("model_uid", "qwen\x00chat", "control characters"),
        ("invoke_timeout", "1e999", "positive number of seconds"),
        ("max_retries", "-1", "from 0 to 10"),
        ("max_retries", "1_000", "from 0 to 10"),
        ("max_retries", "9" * 5000, "from 0 to 10"),
    ],
)
def test_unusable_fields_are_named_in_a_credentials_error(field, value, words):
    with pytest.raises(CredentialsError, match=words):
        parse_settings(credentials(**{field: value}))


def test_an_echoed_input_is_capped():
    with pytest.raises(CredentialsError) as raised:
        parse_settings(credentials(server_url="ftp://" + "x" * 2000))
    assert len(str(raised.value)) < 250
    assert "(2006 characters)" in str(raised.value)


@pytest.mark.parametrize("key", ["sk-abc\r\nX-Injected: 1", "sk-clé-secrète-1234", "sk-with space-123456"])
def test_a_key_an_http_header_cannot_carry_is_refused_without_quoting_it(key):
    with pytest.raises(CredentialsError, match="api_key contains a character") as raised:
        parse_settings(credentials(api_key=key))
    assert_no_key_piece(raised.value, key)


def test_a_key_pasted_into_another_field_is_not_echoed():
    key = "sk-0123456789abcdefghij"
    with pytest.raises(CredentialsError) as raised:
        parse_settings(credentials(api_key=key, server_url=key))
    assert_no_key_piece(raised.value, key)


# ---- errors as data, shown at the edge --------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "detail", "headers", "dify_class", "reason"),
    [
        # Model still loading (Xinference >= 2.11): the balancer may try another server.
        (503, "Model is loading, please retry later: qwen", {"Retry-After": "30"}, InvokeConnectionError, Reason.COME_BACK_LATER),
        # Token Router with no ready backend.
        (503, "No available backend for model qwen", {"Retry-After": "1"}, InvokeConnectionError, Reason.COME_BACK_LATER),
        # HTTP concurrency cap (>= 3.1): plain text, no Retry-After.
        (503, "Service Unavailable", {}, InvokeConnectionError, Reason.COME_BACK_LATER),
        (429, "Rate limit reached for the model.", {}, InvokeRateLimitError, Reason.RATE_LIMITED),
        (401, "Could not validate credentials", {}, InvokeAuthorizationError, Reason.UNAUTHORIZED),
        (404, "Model not found in the model list, uid: qwen", {}, InvokeBadRequestError, Reason.UNKNOWN_MODEL),
        (500, "Internal Server Error: 1 validation error for CreateChatCompletion", {}, InvokeBadRequestError, Reason.REJECTED_REQUEST),
        (500, "Invalid voice Alice, available speakers: ['中文女']", {}, InvokeBadRequestError, Reason.UNKNOWN_VOICE),
        (500, "Model qwen is not for creating embedding.", {}, InvokeBadRequestError, Reason.WRONG_MODEL_TYPE),
        (500, "CUDA out of memory", {}, InvokeServerUnavailableError, Reason.SERVER_ERROR),
        (502, "Bad Gateway", {}, InvokeServerUnavailableError, Reason.SERVER_ERROR),
        (418, "I'm a teapot", {}, InvokeBadRequestError, Reason.REJECTED_REQUEST),
        # Refusals the plugin works around, recognised here once (models/llm, models/text_embedding).
        (400, "Only {'qwen2.5-instruct', 'glm4-chat'} support tool calls", {}, InvokeBadRequestError, Reason.TOOLS_REFUSED),
        (400, "Only {'qwen2.5-instruct', 'glm4-chat'} support tool messages", {}, InvokeBadRequestError, Reason.TOOLS_REFUSED),
        (400, "Streaming support for tool calls is available only when using Qwen models with vLLM backend", {},
         InvokeBadRequestError, Reason.STREAMED_TOOLS_REFUSED),
        (500, "Prompt name 'query' not found in the configured prompts dictionary with keys [].", {},
         InvokeServerUnavailableError, Reason.MISSING_PROMPT),
    ],
)
@responses.activate
def test_each_answer_becomes_one_dify_class_with_the_servers_words(status, detail, headers, dify_class, reason):
    responses.get(f"{SERVER}/v1/models", status=status, headers=headers, json={"detail": detail})
    assert from_status(status, detail, UID, retry_after=bool(headers)).reason is reason
    with pytest.raises(XinferenceError) as raised:
        XinferenceClient(parse_settings(credentials(max_retries="0"))).get_json("/v1/models")
    assert raised.value.reason is reason
    shown = to_dify(raised.value)
    assert type(shown) is dify_class
    assert detail in str(shown)


def test_the_actor_prefix_is_not_shown_and_a_missing_prompt_is_named():
    error = from_status(500, "[address=127.0.0.1:35001, pid=4242] Prompt name 'retrieval.query' not found in the configured", UID)
    assert (error.reason, error.prompt_name) == (Reason.MISSING_PROMPT, "retrieval.query")
    assert str(to_dify(error)) == "Xinference answered 500: Prompt name 'retrieval.query' not found in the configured"


def test_a_500_is_classified_on_its_full_text_and_shortened_only_for_display():
    detail = "x" * 3000 + " is not for creating embedding."
    error = from_status(500, detail, UID)
    assert error.reason is Reason.WRONG_MODEL_TYPE
    shown = to_dify(error)
    assert type(shown) is InvokeBadRequestError
    assert len(str(shown)) < 1200 and str(shown).endswith("…")


@responses.activate
def test_a_key_cut_by_the_shortening_leaves_no_piece_behind():
    key = "sk-kZY7n8O0HktJ" + "q" * 30
    # A 500 echoing the request headers, the key just where the text is cut (1,000 characters).
    echo = "x" * 960 + f" Authorization: Bearer {key}"
    assert echo.index(key) == 983
    responses.get(f"{SERVER}/v1/models", status=500, body=echo)
    with dify_sees(InvokeServerUnavailableError) as raised:
        XinferenceClient(parse_settings(credentials(api_key=key))).get_json("/v1/models")
    assert_no_key_piece(raised.value, key)


@pytest.mark.parametrize("echo", ["invalid key sk-abcdefgh…", "key sk-abcdefghijkl is disabled", "ijklmnopqrst"])
def test_a_key_echoed_in_part_is_redacted(echo):
    key = "sk-abcdefghijklmnopqrstuvwxyz"
    shown = redact(echo, key)
    assert "***" in shown
    assert not any(key[start : start + 8] in shown for start in range(len(key) - 7))


def test_redaction_leaves_text_without_the_key_alone():
    assert redact("Model is loading; sk- keys start like this", "sk-abcdefghijklmnop") == "Model is loading; sk- keys start like this"


def test_an_error_carries_no_server_text_in_its_args():
    error = from_status(500, "Bearer sk-secret-0123456789", UID)
    assert "sk-secret" not in repr(error) and "sk-secret" not in str(error.args)


@responses.activate
def test_a_describe_answer_nested_a_thousand_levels_deep_is_a_server_error():
    nested = "[" * 1000 + "]" * 1000
    responses.get(DESCRIBE, body='{"model_type": "LLM", "model_ability": ' + nested + "}", content_type="application/json")
    with pytest.raises(InvokeServerUnavailableError, match="unexpected shape|not JSON") as raised:
        list(XinferenceLargeLanguageModel(model_schemas=[]).invoke("m", credentials(), [UserPromptMessage(content="Hi")], {}))
    assert type(raised.value) is InvokeServerUnavailableError


@responses.activate
def test_a_wrongly_typed_description_field_is_a_server_error_in_a_streamed_invoke():
    responses.get(DESCRIBE, json={**describe_llm(), "model_family": 0})
    with pytest.raises(InvokeServerUnavailableError, match="unexpected shape.*model_family"):
        list(XinferenceLargeLanguageModel(model_schemas=[]).invoke("m", credentials(), [UserPromptMessage(content="Hi")], {}, stream=True))


def test_our_own_bugs_are_not_reported_as_bad_requests():
    edge = XinferenceTextEmbeddingModel(model_schemas=[])
    for bug in (KeyError("choices"), TypeError("'NoneType' object is not subscriptable"), RecursionError()):
        error = edge._transform_invoke_error(bug)
        assert type(error) is InvokeServerUnavailableError
        assert "failed unexpectedly" in str(error)
    assert type(edge._transform_invoke_error(InvokeError("base"))) is InvokeServerUnavailableError


# ---- the shared executor ----------------------------------------------------------------------


def test_ordered_map_cancels_queued_work_when_the_caller_stops(monkeypatch):
    # The caller stops reading when it gets an error, or when Dify stops a TTS stream.
    monkeypatch.setattr(concurrency, "_executor", ThreadPoolExecutor(max_workers=1))
    started: list[int] = []
    one_started, release = threading.Event(), threading.Event()

    def work(item: int) -> int:
        started.append(item)
        if item == 1:
            one_started.set()
            release.wait(10)  # item 2 is queued behind it meanwhile
        return item

    results = concurrency.ordered_map(work, range(10), concurrency=3)
    assert next(results) == 0
    assert one_started.wait(10)
    results.close()
    release.set()
    concurrency._executor.shutdown(wait=True)
    assert started == [0, 1]


def test_ordered_map_keeps_input_order():
    assert list(concurrency.ordered_map(lambda item: item * 2, range(20), concurrency=4)) == [item * 2 for item in range(20)]


def test_a_long_server_url_is_capped_in_connection_errors():
    url = f"http://127.0.0.1:{closed_port()}/" + "p" * 2000
    with dify_sees(InvokeConnectionError) as raised:
        XinferenceClient(parse_settings(credentials(server_url=url, max_retries="0"))).get_json("/v1/models")
    assert "connection refused" in str(raised.value)
    assert len(str(raised.value)) < 300


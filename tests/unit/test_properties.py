"""The rules every call keeps, for credentials of any value and server answers of any shape.

- `validate_credentials` raises only `CredentialsValidateFailedError`;
- everything else raises only one of Dify's five `InvokeError` classes, never the base;
- no piece of the API key of 8+ characters in any message, `args` or `repr`;
- echoed input is capped.
The server is `responses`' test double for every host, so no example touches the network.
"""

import io
import json
import logging
import re
import string
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import responses
import yaml
from dify_plugin.entities.model.message import UserPromptMessage
from dify_plugin.errors.model import (
    CredentialsValidateFailedError,
    InvokeAuthorizationError,
    InvokeBadRequestError,
    InvokeConnectionError,
    InvokeRateLimitError,
    InvokeServerUnavailableError,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.common import http, memory
from models.llm.llm import XinferenceLargeLanguageModel
from models.rerank.rerank import XinferenceRerankModel
from models.speech2text.speech2text import XinferenceSpeech2TextModel
from models.text_embedding.text_embedding import XinferenceTextEmbeddingModel
from models.tts.tts import XinferenceText2SpeechModel
from tests.unit.xinference import SERVER, UID, chat_answer, describe_embedding, describe_llm, describe_rerank

DIFY_INVOKE_ERRORS = (
    InvokeConnectionError,
    InvokeServerUnavailableError,
    InvokeRateLimitError,
    InvokeAuthorizationError,
    InvokeBadRequestError,
)
EXAMPLES = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
KEY = "sk-Qm7vR2xT9pL4wZ8nK3jH"
# A capped echo is at most 100 characters of the input; no message needs more than this.
MAX_MESSAGE_CHARS = 4000


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    monkeypatch.setattr(http.time, "sleep", lambda seconds: None)


# ---- what the server does: everything, for every host --------------------------------------

ANY_HOST = re.compile(r".*")

DESCRIPTIONS: dict[str, dict] = {
    "llm": describe_llm(),
    "embedding": describe_embedding(),
    "rerank": describe_rerank(),
    "audio-in": {"model_type": "audio", "model_name": "whisper-tiny", "model_ability": ["audio2text"]},
    "audio-out": {"model_type": "audio", "model_name": "CosyVoice-300M-SFT", "model_family": "CosyVoice", "model_ability": ["text2audio"]},
}
GOOD_ANSWERS: dict[str, bytes] = {
    "/v1/chat/completions": json.dumps(chat_answer()).encode(),
    "/v1/embeddings": json.dumps({"data": [{"index": 0, "embedding": [0.1, 0.2]}], "usage": {"prompt_tokens": 1}}).encode(),
    "/v1/rerank": json.dumps({"results": [{"index": 1, "relevance_score": 0.2}, {"index": 0, "relevance_score": 0.9}]}).encode(),
    "/v1/audio/transcriptions": b'{"text": "hello"}',
    "/v1/audio/speech": b"ID3 audio bytes",
}


class Server:
    """Answers a describe with `describe`, the model's endpoint with `answer`, whatever the host."""

    def __init__(self, mock: responses.RequestsMock) -> None:
        self.describe: tuple[int, dict, bytes] = (200, {}, b"{}")
        self.answer: Callable[[str], tuple[int, dict, bytes]] = lambda path: (200, {}, GOOD_ANSWERS.get(path, b"{}"))
        mock.add_callback(responses.GET, ANY_HOST, callback=self._get)
        mock.add_callback(responses.POST, ANY_HOST, callback=self._post)

    def will_answer(
        self, describe: tuple[int, dict, bytes], answer: Callable[[str], tuple[int, dict, bytes]] | None = None
    ) -> None:
        """Sets this example's answers; each example starts with no cached description."""
        memory.forget_everything()
        self.describe = describe
        if answer is not None:
            self.answer = answer

    def _get(self, request: Any) -> tuple[int, dict, bytes]:
        if "/v1/models/" in request.path_url:
            return self.describe
        return 200, {}, b'{"data": [{"id": "qwen-chat"}, {"id": "bge-m3"}]}'

    def _post(self, request: Any) -> tuple[int, dict, bytes]:
        return self.answer(request.path_url.split("?")[0])


@pytest.fixture
def server():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield Server(mock)


# ---- one call of each kind ------------------------------------------------------------------


def llm_stream(credentials: dict, model: str = "m") -> None:
    list(XinferenceLargeLanguageModel(model_schemas=[]).invoke(model, credentials, [UserPromptMessage(content="Hi")], {}, stream=True))


def llm_blocking(credentials: dict, model: str = "m") -> None:
    list(XinferenceLargeLanguageModel(model_schemas=[]).invoke(model, credentials, [UserPromptMessage(content="Hi")], {}, stream=False))


def embed(credentials: dict, model: str = "m") -> None:
    XinferenceTextEmbeddingModel(model_schemas=[]).invoke(model, credentials, ["hello"])


def rerank(credentials: dict, model: str = "m") -> None:
    XinferenceRerankModel(model_schemas=[]).invoke(model, credentials, "q", ["a", "b"])


def transcribe(credentials: dict, model: str = "m") -> None:
    XinferenceSpeech2TextModel(model_schemas=[]).invoke(model, credentials, io.BytesIO(b"RIFF....WAVEfmt "))


def speak(credentials: dict, model: str = "m") -> None:
    audio = XinferenceText2SpeechModel(model_schemas=[]).invoke(model, "tenant", credentials, "Hello there.", "")
    if not isinstance(audio, bytes):
        list(audio)


CALLS: dict[str, tuple[str, Callable[..., None], type]] = {
    "llm stream": ("llm", llm_stream, XinferenceLargeLanguageModel),
    "llm blocking": ("llm", llm_blocking, XinferenceLargeLanguageModel),
    "embedding": ("embedding", embed, XinferenceTextEmbeddingModel),
    "rerank": ("rerank", rerank, XinferenceRerankModel),
    "speech-to-text": ("audio-in", transcribe, XinferenceSpeech2TextModel),
    "text-to-speech": ("audio-out", speak, XinferenceText2SpeechModel),
}


def key_pieces(key: object) -> list[str]:
    text = key.strip() if isinstance(key, str) else ""
    if len(text) < 8:
        return []
    return [text[start : start + 8] for start in range(len(text) - 7)]


def check_error(error: BaseException, allowed: tuple[type, ...], key: object) -> None:
    assert type(error) in allowed, f"{type(error).__name__}: {error}"
    shown = " ".join([str(error), repr(error.args)])  # repr(error) adds only the class name
    leaked = [piece for piece in key_pieces(key) if piece in shown]
    assert not leaked, f"key pieces {leaked[:3]} in {shown[:300]!r}"
    assert len(str(error)) <= MAX_MESSAGE_CHARS


# ---- credentials of any value ---------------------------------------------------------------

FIELDS = (
    "server_url", "model_uid", "api_key", "invoke_timeout", "max_retries",
    "embedding_batch_size", "audio_language", "audio_prompt", "tts_voice",
)
ODD_TEXT = st.sampled_from([
    "", " ", "\r\n", "http://[::1", "http://[::1]:9997", "http://h:99999", "http://h:0", "https://h/v1/", "http://:80",
    "http://user:pw@h", "ftp://h", "http://h?x=1", "http://h#f", "0", "-1", "1e308", "nan", "inf", "3.5", "1_000",
    "9" * 5000, "http://" + "x" * 2000, "qwen/chat", "qwen\x00", "中文女", "sk-abc\r\nX: 1", "sk-clé",
])
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=40),
    ODD_TEXT,
    st.just(SERVER),
    st.just(UID),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
)
KEYS = st.one_of(
    st.none(),
    st.just(KEY),
    st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=8, max_size=48).map(lambda tail: "sk-" + tail),
    st.text(min_size=8, max_size=48),
)
CREDENTIALS = st.fixed_dictionaries(
    {"server_url": st.one_of(st.just(SERVER), ANY_VALUE), "model_uid": st.one_of(st.just(UID), ANY_VALUE), "api_key": KEYS},
    optional={field: ANY_VALUE for field in FIELDS if field not in ("server_url", "model_uid", "api_key")},
)


@EXAMPLES
@given(credentials=CREDENTIALS, kind=st.sampled_from(sorted(CALLS)))
def test_validation_of_any_credentials_raises_only_credentials_validate_failed(server, credentials, kind):
    description, _, model_class = CALLS[kind]
    server.will_answer((200, {}, json.dumps(DESCRIPTIONS[description]).encode()))
    try:
        model_class(model_schemas=[]).validate_credentials("m", credentials)
    except Exception as error:
        check_error(error, (CredentialsValidateFailedError,), credentials.get("api_key"))


@EXAMPLES
@given(credentials=CREDENTIALS, kind=st.sampled_from(sorted(CALLS)))
def test_invoking_with_any_credentials_raises_only_dify_invoke_errors(server, credentials, kind):
    description, call, _ = CALLS[kind]
    server.will_answer((200, {}, json.dumps(DESCRIPTIONS[description]).encode()))
    try:
        call(credentials)
    except Exception as error:
        check_error(error, DIFY_INVOKE_ERRORS, credentials.get("api_key"))


# ---- server answers of any shape ------------------------------------------------------------

KNOWN_KEYS = st.sampled_from([
    "model_type", "model_ability", "context_length", "model_family", "model_name", "max_tokens", "model_engine",
    "choices", "message", "delta", "content", "tool_calls", "usage", "finish_reason", "data", "index", "embedding",
    "results", "relevance_score", "text", "detail", "error", "function", "arguments", "prompt_tokens",
])
KEY_ECHOES = st.sampled_from([KEY, KEY[:12], f"Bearer {KEY}", f"invalid key {KEY[:11]}…", f"Authorization: Bearer {KEY}\r\n"])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | KEY_ECHOES,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KNOWN_KEYS | st.text(max_size=8), children, max_size=5),
    max_leaves=25,
)
DEEP = st.integers(min_value=1, max_value=3000).map(lambda depth: ("[" * depth + "]" * depth).encode())
BODIES = st.one_of(
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=200),
    st.text(max_size=300).map(str.encode),
    # The key where a 1,000-character cut would fall.
    st.builds(lambda pad, echo: ("x" * pad + echo).encode(), st.integers(900, 1000), KEY_ECHOES),
    DEEP,
)
STATUSES = st.sampled_from([200, 200, 200, 200, 400, 401, 403, 404, 413, 422, 429, 500, 501, 502, 503, 504])
HEADERS: st.SearchStrategy[dict[str, str]] = st.one_of(
    st.just({}),
    st.sampled_from(["0", "1", "-1", "nan", "inf", "1e9", "abc", "Wed, 21 Oct 2026 07:28:00 GMT"]).map(lambda v: {"Retry-After": v}),
)
DESCRIPTION_BODIES = st.one_of(
    BODIES,
    st.builds(
        lambda base, changes: json.dumps({**base, **changes}).encode(),
        st.sampled_from(list(DESCRIPTIONS.values())),
        st.dictionaries(KNOWN_KEYS, JSON_VALUES, max_size=3),
    ),
)
EVENTS = st.lists(
    st.one_of(
        JSON_VALUES.map(json.dumps),
        st.builds(lambda text: json.dumps({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}), st.text(max_size=10)),
        st.just(json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})),
        KEY_ECHOES.map(lambda echo: json.dumps({"error": f"500: {echo}"})),
        st.text(max_size=30),
        st.just("[DONE]"),
    ),
    max_size=6,
)


def sse_body(events: list[str]) -> bytes:
    return "".join(f"data: {event}\r\n\r\n" for event in events).encode()


def description_for(description: str) -> st.SearchStrategy[bytes]:
    """Mostly the model's own description, sometimes changed, sometimes anything at all."""
    own = DESCRIPTIONS[description]
    return st.one_of(
        st.just(json.dumps(own).encode()),
        st.dictionaries(KNOWN_KEYS, JSON_VALUES, max_size=3).map(lambda changes: json.dumps({**own, **changes}).encode()),
        DESCRIPTION_BODIES,
    )


@EXAMPLES
@given(
    kind=st.sampled_from(sorted(CALLS)),
    data=st.data(),
    describe_status=st.one_of(st.just(200), STATUSES),
    status=STATUSES,
    headers=HEADERS,
    body=BODIES,
    events=EVENTS,
)
def test_any_server_answer_raises_only_dify_invoke_errors_without_the_key(
    server, kind, data, describe_status, status, headers, body, events
):
    description, call, _ = CALLS[kind]
    describe_body = data.draw(description_for(description))
    if kind == "llm stream" and status == 200:
        body = sse_body(events)
    server.will_answer((describe_status, headers, describe_body), lambda path: (status, headers, body))
    try:
        call({"server_url": SERVER, "model_uid": UID, "api_key": KEY, "max_retries": "1"})
    except Exception as error:
        check_error(error, DIFY_INVOKE_ERRORS, KEY)


@EXAMPLES
@given(kind=st.sampled_from(sorted(CALLS)), data=st.data(), status=STATUSES, headers=HEADERS, body=BODIES)
def test_validating_against_any_server_answer_raises_only_credentials_validate_failed(
    server, kind, data, status, headers, body
):
    description, _, model_class = CALLS[kind]
    server.will_answer((200, {}, data.draw(description_for(description))), lambda path: (status, headers, body))
    try:
        model_class(model_schemas=[]).validate_credentials("m", {"server_url": SERVER, "model_uid": UID, "api_key": KEY})
    except Exception as error:
        check_error(error, (CredentialsValidateFailedError,), KEY)


# ---- an API key typed into any field of the form ------------------------------------------------

FORM = yaml.safe_load((Path(__file__).parents[2] / "provider" / "xinference.yaml").read_text(encoding="utf-8"))
# Every field of the credential form, and the model name above it.
FORM_FIELDS = ("model", *(field["variable"] for field in FORM["model_credential_schema"]["credential_form_schemas"]))
API_KEYS = st.one_of(
    st.builds(lambda prefix, tail: prefix + tail, st.sampled_from(["sk-", "xf-"]), st.text(string.ascii_letters + string.digits + "-_", min_size=8, max_size=48)),
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=8, max_size=60),
)
# Mostly the paste alone; sometimes with what the field held around it.
AROUND_A_PASTE = st.one_of(st.just(""), st.just(""), st.sampled_from([" ", "http://", "http://h:9997/", "8192", "Bearer ", "中文女 "]), st.text(max_size=8))


@st.composite
def a_key_typed_into_fields(draw) -> tuple[str, dict, str]:
    """The key, the form with (a piece of) it typed into one or more fields, and the model name."""
    key = draw(API_KEYS)
    form = {"server_url": SERVER, "model_uid": UID, "api_key": key, "max_retries": "1"}
    model = "m"
    for field in draw(st.sets(st.sampled_from(FORM_FIELDS), min_size=1, max_size=2)):
        start = draw(st.integers(0, len(key) - 8))
        piece = draw(st.sampled_from([key, key[start:], key[: len(key) - start], key[start : start + 8]]))
        typed = draw(AROUND_A_PASTE) + piece + draw(AROUND_A_PASTE)
        if field == "model":
            model = typed
        elif field != "api_key":
            form[field] = typed
    return key, form, model


class EchoingServer:
    """A server that answers well, is loading, or echoes what it was sent (path, form fields, body) in its error."""

    def __init__(self, mock: responses.RequestsMock) -> None:
        self.description: dict = {}
        self.echoes = ""
        mock.add_callback(responses.GET, ANY_HOST, callback=self._get)
        mock.add_callback(responses.POST, ANY_HOST, callback=self._post)

    def _get(self, request: Any) -> tuple[int, dict, bytes]:
        if self.echoes == "loading":  # retried once, and each retry is logged
            return 503, {"Retry-After": "0"}, b'{"detail": "Model is loading"}'
        if self.echoes == "describe":
            return 404, {}, json.dumps({"detail": f"Model not found in the model list, uid: {request.path_url}"}).encode()
        if "/v1/models/" in request.path_url:
            return 200, {}, json.dumps(self.description).encode()
        return 200, {}, json.dumps({"data": [{"id": request.path_url}]}).encode()

    def _post(self, request: Any) -> tuple[int, dict, bytes]:
        path = request.path_url.split("?")[0]
        if self.echoes in ("400", "500"):
            sent = request.body.decode("utf-8", "replace") if isinstance(request.body, bytes) else str(request.body)
            return int(self.echoes), {}, json.dumps({"detail": f"[address=127.0.0.1:1, pid=1] bad request to {path}: {sent}"}).encode()
        if path == "/v1/chat/completions" and b'"stream": true' in (request.body or b""):
            return 200, {"Content-Type": "text/event-stream"}, sse_body([json.dumps(chat_answer()), "[DONE]"])
        return 200, {}, GOOD_ANSWERS.get(path, b"{}")


@pytest.fixture
def echoing_server():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield EchoingServer(mock)


@contextmanager
def plugin_log_lines() -> Iterator[list[str]]:
    """Every log line the plugin writes meanwhile, debug included."""
    lines: list[str] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: lines.append(record.getMessage())
    plugin_logger = logging.getLogger("models")
    level = plugin_logger.level
    plugin_logger.addHandler(handler)
    plugin_logger.setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        plugin_logger.removeHandler(handler)
        plugin_logger.setLevel(level)


def chain_of(error: BaseException) -> Iterator[BaseException]:
    """The exception and those a traceback of it shows (its cause, or its context unless suppressed)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)


def assert_no_key_piece_shown(key: str, error: BaseException | None, log_lines: list[str]) -> None:
    """Nothing shows the key or a piece of it of 8+ characters (what `redaction.redact` promises)."""
    shown = [line for line in log_lines]
    for link in chain_of(error) if error else ():
        # Not repr(link): beyond repr(link.args) it adds only the class name, e.g. InvokeConnectionError.
        shown += [str(link), repr(link.args), str(getattr(link, "description", ""))]
    leaked = [(piece, text) for text in shown for piece in key_pieces(key) if piece in text]
    assert not leaked, f"key piece {leaked[0][0]!r} shown in {leaked[0][1][:300]!r}"


@pytest.mark.parametrize("echoes", ["", "loading", "describe", "400", "500"])
@settings(EXAMPLES, max_examples=100)
@given(typed=a_key_typed_into_fields(), kind=st.sampled_from(sorted(CALLS)))
def test_a_key_typed_into_any_field_is_never_shown(echoing_server, echoes, typed, kind):
    key, form, model = typed
    description, call, model_class = CALLS[kind]
    memory.forget_everything()
    # An embedding model with prompts of its own: the plugin logs which one it applies.
    echoing_server.description = {**DESCRIPTIONS[description], **({"model_engine": "sentence_transformers"} if description == "embedding" else {})}
    echoing_server.echoes = echoes
    for attempt in ("validate", "invoke"):
        raised: BaseException | None = None
        with plugin_log_lines() as log_lines:
            try:
                if attempt == "validate":
                    model_class(model_schemas=[]).validate_credentials(model, form)
                else:
                    call(form, model)
            except Exception as error:
                raised = error
        assert_no_key_piece_shown(key, raised, log_lines)
        if raised is not None:
            check_error(raised, (CredentialsValidateFailedError,) if attempt == "validate" else DIFY_INVOKE_ERRORS, key)

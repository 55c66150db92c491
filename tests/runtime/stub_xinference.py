"""A tiny Xinference stand-in on 127.0.0.1, answering the wire shapes of the real server.

Only what the runtime tests need: describe (`GET /v1/models[/{uid}]`) and chat
(`POST /v1/chat/completions`, blocking and SSE with `\\r\\n` framing), API-key checks
(401), unknown UIDs (400/404), the wrong model type (500 "is not for chat") and a
stream that fails in the middle (`data: {"error": ...}` with no `[DONE]`).
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHAT_UID = "stub-chat"
BROKEN_STREAM_UID = "stub-broken-stream"
EMBEDDING_UID = "stub-embedding"
CONTEXT_LENGTH = 4096
ANSWER_PIECES = ["Hello", " from", " the", " stub", "."]
USAGE = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
MID_STREAM_ERROR = "429: Rate limit reached for the model, try again later"

_CHAT_DESCRIPTION = {
    "model_type": "LLM",
    "model_name": "stub-qwen",
    "model_lang": ["en"],
    "model_ability": ["generate", "chat", "tools"],
    "model_format": "pytorch",
    "model_family": "qwen2.5-instruct",
    "context_length": CONTEXT_LENGTH,
    "model_engine": "transformers",
    "replica": 1,
}
DESCRIPTIONS = {
    CHAT_UID: _CHAT_DESCRIPTION,
    BROKEN_STREAM_UID: _CHAT_DESCRIPTION,
    EMBEDDING_UID: {"model_type": "embedding", "model_name": "stub-bge", "dimensions": 8, "max_tokens": 512},
}


class StubXinference:
    """Starts on a free loopback port; `url` is its base URL; `requests` what it received."""

    def __init__(self, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.requests: list[dict] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(_Handler):
            server_state = stub

        return Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_state: StubXinference

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's name
        pass  # keep test output clean

    # ---- routing ------------------------------------------------------------------------

    def do_GET(self) -> None:
        if not self._authorised():
            return
        if self.path == "/v1/models":
            listed = [{"id": uid, **description} for uid, description in DESCRIPTIONS.items()]
            self._send_json(200, {"object": "list", "data": listed})
        elif self.path.startswith("/v1/models/"):
            uid = self.path.removeprefix("/v1/models/")
            if uid in DESCRIPTIONS:
                self._send_json(200, DESCRIPTIONS[uid])
            else:
                self._send_json(400, {"detail": f"Model not found in the model list, uid: {uid}"})
        else:
            self._send_json(404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        self.server_state.requests.append({"path": self.path, "body": body, "headers": dict(self.headers)})
        if not self._authorised():
            return
        if self.path != "/v1/chat/completions":
            self._send_json(404, {"detail": "Not Found"})
            return
        uid = body.get("model")
        if uid not in DESCRIPTIONS:
            self._send_json(404, {"detail": f"Model not found in the model list, uid: {uid}"})
        elif DESCRIPTIONS[uid]["model_type"] != "LLM":
            self._send_json(500, {"detail": f"Model {uid} is not for chat."})
        elif body.get("stream"):
            self._stream_chat(uid)
        else:
            self._send_json(200, _chat_answer(uid))

    # ---- answers ------------------------------------------------------------------------

    def _authorised(self) -> bool:
        expected = self.server_state.api_key
        if expected is None:
            return True
        header = self.headers.get("Authorization", "")
        if not header:
            self._send_json(401, {"detail": "Not authenticated"})
            return False
        if header != f"Bearer {expected}":
            self._send_json(401, {"detail": "Could not validate credentials"})
            return False
        return True

    def _send_json(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream_chat(self, uid: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self._event(": ping - 2026-11-23 00:00:00.000000")
        for piece in ANSWER_PIECES:
            self._event("data: " + json.dumps(_chunk(uid, {"content": piece}, None)))
        if uid == BROKEN_STREAM_UID:
            self._event("data: " + json.dumps({"error": MID_STREAM_ERROR}))
            return  # the real server closes without [DONE]
        self._event("data: " + json.dumps(_chunk(uid, {"content": ""}, "stop")))
        self._event("data: " + json.dumps({**_chunk(uid, None, None), "choices": [], "usage": USAGE}))
        self._event("data: [DONE]")

    def _event(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n\r\n")
        self.wfile.flush()


def _chat_answer(uid: str) -> dict:
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": 0,
        "model": uid,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(ANSWER_PIECES)},
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
    }


def _chunk(uid: str, delta: dict | None, finish_reason: str | None) -> dict:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
    return {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": 0, "model": uid, "choices": choices}

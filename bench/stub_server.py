"""A zero-latency stand-in for Xinference, so a benchmark sees only the client's own cost.

A threaded HTTP/1.1 keep-alive server on 127.0.0.1 that parses as little as it can and
answers from pre-built bytes:

- `GET /v1/models/{uid}` and `GET /v1/models`: 4.1.0-shaped descriptions of the uids
  `chat`, `generate`, `embedding`, `rerank` (anything else: 400, as Xinference does).
  `chat~500` is `chat` whose streams send one chunk every 500 µs (a paced "model").
- `POST /v1/chat/completions`, `/v1/completions`: a short blocking answer, or with
  `"stream": true` an SSE stream (`data: {...}\\r\\n\\r\\n`, chunked transfer encoding, one
  write per event) of `max_tokens` content chunks (default 1,000), a closing chunk with
  `finish_reason` and usage, a usage-only chunk, and `data: [DONE]` (chat only).
- `POST /v1/embeddings`: one vector per input, `--dims` numbers for `embedding`, 1,024 for
  `embedding-1024`; as 4.x does, base64 float32 when the body asks `encoding_format: "base64"`.
- `POST /v1/rerank`: one result per document, sorted by score.
- `GET /_bench/stats`: requests served and body bytes sent per "METHOD path" since the last
  `POST /_bench/reset` (the `/_bench/` requests themselves are not counted), plus connections
  accepted.

Runs in its own process (`python -m bench.stub_server --port 0`), so it neither shares the
GIL with the client under test nor runs under the gevent patching that `dify_plugin`
applies on import. It prints one JSON line `{"url": ..., "pid": ...}` once it listens.
"""

import argparse
import base64
import json
import socket
import socketserver
import struct
import sys
import threading
import time
from collections import Counter

DEFAULT_STREAM_CHUNKS = 1000
BLOCKING_ANSWER = "Hello from the stub server."

_DESCRIPTIONS = {
    "chat": {
        "model_type": "LLM",
        "address": "127.0.0.1:0",
        "accelerators": [],
        "model_name": "stub-chat",
        "model_lang": ["en"],
        "model_ability": ["generate", "chat", "tools"],
        "model_description": "stub",
        "model_format": "pytorch",
        "model_size_in_billions": 1,
        "model_family": "qwen2.5-instruct",
        "quantization": "none",
        "model_hub": "huggingface",
        "revision": None,
        "context_length": 32768,
        "strict_system_first": False,
        "model_engine": "Transformers",
        "replica": 1,
    },
    "generate": {
        "model_type": "LLM",
        "model_name": "stub-generate",
        "model_lang": ["en"],
        "model_ability": ["generate"],
        "model_format": "pytorch",
        "model_family": "qwen2.5",
        "context_length": 32768,
        "model_engine": "Transformers",
        "replica": 1,
    },
    "embedding": {
        "model_type": "embedding",
        "model_name": "stub-embedding",
        "model_ability": ["embed"],
        "dimensions": 384,
        "max_tokens": 256,
        "language": ["en"],
        "model_engine": "sentence_transformers",
        "replica": 1,
    },
    "rerank": {
        "model_type": "rerank",
        "model_name": "stub-rerank",
        "model_ability": ["rerank"],
        "type": "normal",
        "language": ["en"],
        "model_engine": "sentence_transformers",
        "replica": 1,
    },
}


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(", ", ": ")).encode()


class Stub:
    """Everything the handler threads share: pre-built answers and the request counters."""

    def __init__(self, dims: int, like_xinference_tcp: bool = False) -> None:
        self.dims = dims
        self.like_xinference_tcp = like_xinference_tcp
        self.counts: Counter[str] = Counter()
        self.connections = 0
        self.lock = threading.Lock()
        self.body_bytes: Counter[str] = Counter()
        descriptions = json.loads(json.dumps(_DESCRIPTIONS))
        descriptions["embedding"]["dimensions"] = dims
        descriptions["embedding-1024"] = {**descriptions["embedding"], "model_name": "stub-embedding-1024",
                                          "dimensions": 1024}
        self.describe = {uid: _dumps({"id": uid, **d}) for uid, d in descriptions.items()}
        self.listing = _dumps({"object": "list", "data": [{"id": u, **d} for u, d in descriptions.items()]})
        # float32 values, as models compute them; as JSON numbers the real server writes
        # them as full doubles, with base64 as packed little-endian float32.
        self.vectors = {uid: _vector_encodings(d["dimensions"]) for uid, d in descriptions.items()
                        if d["model_type"] == "embedding"}

    def describe_of(self, uid: str) -> bytes | None:
        """`chat~500` describes like `chat`; the suffix paces its streams (µs per chunk)."""
        base = uid.split("~", 1)[0]
        answer = self.describe.get(base)
        if answer is None or base == uid:
            return answer
        return answer.replace(b'"id": ' + _dumps(base), b'"id": ' + _dumps(uid), 1)

    def count(self, key: str) -> None:
        with self.lock:
            self.counts[key] += 1

    def count_bytes(self, key: str, sent: int) -> None:
        with self.lock:
            self.body_bytes[key] += sent

    def stats(self) -> bytes:
        with self.lock:
            return _dumps(
                {"requests": dict(self.counts), "total": sum(self.counts.values()),
                 "body_bytes": dict(self.body_bytes), "connections": self.connections}
            )

    def reset(self) -> None:
        with self.lock:
            self.counts.clear()
            self.body_bytes.clear()
            self.connections = 0


def _response(status: str, body: bytes, content_type: str = "application/json") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body


_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
)


def _chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _event(payload: bytes) -> bytes:
    return _chunk(b"data: " + payload + b"\r\n\r\n")


class Handler(socketserver.BaseRequestHandler):
    server: "StubHTTPServer"

    def handle(self) -> None:
        stub = self.server.stub
        sock: socket.socket = self.request
        if stub.like_xinference_tcp:
            sock = _SplitWrites(sock)
        else:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with stub.lock:
            stub.connections += 1
        rfile = self.request.makefile("rb", buffering=65536)
        try:
            while True:
                request_line = rfile.readline(65537)
                if not request_line:
                    return
                if request_line in (b"\r\n", b"\n"):
                    continue
                method, target, _ = request_line.decode("latin-1").split(" ", 2)
                length = 0
                close = False
                while True:
                    header = rfile.readline(65537)
                    if header in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = header.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"connection" and value.strip().lower() == b"close":
                        close = True
                body = rfile.read(length) if length else b""
                self.route(sock, stub, method, target.split("?", 1)[0], body)
                if close:
                    return
        except (ConnectionError, OSError, ValueError):
            return
        finally:
            rfile.close()

    def route(self, sock: socket.socket, stub: Stub, method: str, path: str, body: bytes) -> None:
        if path.startswith("/_bench/"):
            if path == "/_bench/reset":
                stub.reset()
            sock.sendall(_response("200 OK", stub.stats()))
            return
        stub.count(f"{method} {path}")
        if method == "GET" and path.startswith("/v1/models/"):
            uid = path[len("/v1/models/") :]
            answer = stub.describe_of(uid)
            if answer is None:
                detail = f"[address=127.0.0.1:0, pid=0] Model not found in the model list, uid: {uid}"
                sock.sendall(_response("400 Bad Request", _dumps({"detail": detail})))
            else:
                sock.sendall(_response("200 OK", answer))
        elif method == "GET" and path == "/v1/models":
            sock.sendall(_response("200 OK", stub.listing))
        elif method == "POST" and path in ("/v1/chat/completions", "/v1/completions"):
            request = json.loads(body or b"{}")
            chat = path == "/v1/chat/completions"
            if request.get("stream"):
                self.stream(sock, request, chat)
            else:
                sock.sendall(_response("200 OK", _blocking_answer(request, chat)))
        elif method == "POST" and path == "/v1/embeddings":
            answer = _embeddings(stub, json.loads(body))
            stub.count_bytes(f"{method} {path}", len(answer))
            sock.sendall(_response("200 OK", answer))
        elif method == "POST" and path == "/v1/rerank":
            sock.sendall(_response("200 OK", _rerank(json.loads(body))))
        else:
            sock.sendall(_response("404 Not Found", _dumps({"detail": "Not Found"})))

    def stream(self, sock: socket.socket, request: dict, chat: bool) -> None:
        model = request.get("model", "")
        count = int(request.get("max_tokens") or DEFAULT_STREAM_CHUNKS)
        created = int(time.time())
        ident = "chatcmpl-stub" if chat else "cmpl-stub"
        kind = "chat.completion.chunk" if chat else "text_completion"

        def piece(text: str | None, finish: str | None, usage: dict | None, empty: bool = False) -> bytes:
            if empty:
                choices: list = []
            elif chat:
                choices = [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]
            else:
                choices = [{"index": 0, "text": text, "finish_reason": finish}]
            event: dict = {"id": ident, "model": model, "object": kind, "created": created, "choices": choices}
            if usage is not None or empty:
                event["usage"] = usage
            return _event(_dumps(event))

        _, _, pacing = model.partition("~")
        interval = int(pacing) / 1e6 if pacing.isdigit() else 0.0
        sock.sendall(_STREAM_HEAD)
        start = time.perf_counter()
        for index in range(count):
            if interval:
                # On an absolute schedule, so sleep overshoot does not add up.
                delay = start + index * interval - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            sock.sendall(piece(f"tok{index} ", None, None))
        usage = {"prompt_tokens": 10, "completion_tokens": count, "total_tokens": 10 + count}
        tail = piece("", "stop", usage)
        if chat:
            tail += piece(None, None, usage, empty=True) + _event(b"[DONE]")
        sock.sendall(tail + b"0\r\n\r\n")


def _blocking_answer(request: dict, chat: bool) -> bytes:
    usage = {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17}
    if chat:
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": BLOCKING_ANSWER, "tool_calls": []},
            "finish_reason": "stop",
        }
        kind, ident = "chat.completion", "chatcmpl-stub"
    else:
        choice = {"index": 0, "text": BLOCKING_ANSWER, "logprobs": None, "finish_reason": "stop"}
        kind, ident = "text_completion", "cmpl-stub"
    return _dumps(
        {"id": ident, "object": kind, "created": int(time.time()), "model": request.get("model", ""),
         "choices": [choice], "usage": usage}
    )


def _vector_encodings(dims: int) -> dict[str, bytes]:
    values = [((i * 7919) % 1000) / 1000.0 - 0.5 + 1e-4 for i in range(dims)]
    packed = struct.pack(f"<{dims}f", *values)
    as_float32 = struct.unpack(f"<{dims}f", packed)
    return {
        "float": ("[" + ", ".join(map(repr, as_float32)) + "]").encode(),
        "base64": b'"' + base64.b64encode(packed) + b'"',
    }


def _embeddings(stub: Stub, request: dict) -> bytes:
    texts = request.get("input")
    if isinstance(texts, str):
        texts = [texts]
    encodings = stub.vectors.get(request.get("model"), stub.vectors["embedding"])
    vector = encodings["base64" if request.get("encoding_format") == "base64" else "float"]
    head = b'{"index": %d, "object": "embedding", "embedding": '
    items = b", ".join(head % index + vector + b"}" for index in range(len(texts)))
    tokens = sum(len(str(t)) // 4 + 1 for t in texts)
    return (
        b'{"object": "list", "model": ' + _dumps(request.get("model", "")) + b', "data": [' + items
        + b'], "usage": {"prompt_tokens": %d, "total_tokens": %d}}' % (tokens, tokens)
    )


def _rerank(request: dict) -> bytes:
    documents = request.get("documents") or []
    scores = [((index * 7919) % 1000) / 1000.0 for index in range(len(documents))]
    order = sorted(range(len(documents)), key=lambda i: -scores[i])
    top_n = request.get("top_n")
    if top_n:
        order = order[: int(top_n)]
    with_docs = bool(request.get("return_documents"))
    results = [
        {"index": i, "relevance_score": scores[i], "document": {"text": documents[i]} if with_docs else None}
        for i in order
    ]
    meta = {"api_version": None, "billed_units": None, "tokens": None, "warnings": None}
    return _dumps({"id": "rerank-stub", "results": results, "meta": meta})


class _SplitWrites:
    """Writes a response as Xinference 4.1.0 does on the wire: headers, then body, as two
    segments on a socket with Nagle on. A client that delays its ACK of the first one
    (Linux does on a busy keep-alive connection) gets the body ~40 ms late."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def sendall(self, data: bytes) -> None:
        head, separator, body = data.partition(b"\r\n\r\n")
        if separator and body and data.startswith(b"HTTP/1.1 "):
            self._sock.sendall(head + separator)
            self._sock.sendall(body)
        else:
            self._sock.sendall(data)


class StubHTTPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], stub: Stub) -> None:
        self.stub = stub
        super().__init__(address, Handler)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--dims", type=int, default=384, help="embedding dimensions")
    parser.add_argument("--like-xinference-tcp", action="store_true",
                        help="Nagle on, headers and body in two writes (as Xinference 4.1.0)")
    args = parser.parse_args(argv)
    server = StubHTTPServer((args.host, args.port), Stub(args.dims, args.like_xinference_tcp))
    host, port = server.server_address[:2]
    print(json.dumps({"url": f"http://{host}:{port}", "pid": __import__("os").getpid()}), flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    sys.exit(main())

"""The runtime tests' Xinference stand-in, grown to every model type the daemon tier calls.

On top of `tests/runtime/stub_xinference.py` (describe, chat, auth, errors) it serves:
  - chat with tool calls (when the request carries `tools`) and a reasoning model whose
    answers carry `reasoning_content`, blocking and streamed;
  - embeddings at 384, 1,024 and 4,096 dimensions, full-precision floats as real servers
    send them (~20 characters each), so answer sizes are those of production;
  - rerank, speech-to-text (multipart upload) and text-to-speech (audio bytes).
"""

import json
import random

from tests.runtime.stub_xinference import (
    _CHAT_DESCRIPTION,
    DESCRIPTIONS,
    USAGE,
    StubXinference,
    _chat_answer,
    _chunk,
    _Handler,
)

REASONING_UID = "stub-reasoner"
RERANK_UID = "stub-rerank"
WHISPER_UID = "stub-whisper"
TTS_UID = "stub-tts"
EMBEDDING_DIMENSIONS = {"stub-embed-384": 384, "stub-embed-1024": 1024, "stub-embed-4096": 4096}
TOOL_CALL = {"id": "call-stub-1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
REASONING = "The user greets me; I greet back."
TRANSCRIPT = "Hello from the stub transcriber."
SPEECH = b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 4  # an MP3 header and some bytes

ALL_DESCRIPTIONS = {
    **DESCRIPTIONS,
    REASONING_UID: {**_CHAT_DESCRIPTION, "model_family": "qwen3", "model_ability": ["chat", "reasoning", "tools"]},
    **{
        uid: {"model_type": "embedding", "model_name": f"stub-bge-{dimensions}", "dimensions": dimensions,
              "max_tokens": 512, "model_ability": ["embed"], "model_engine": "sentence_transformers"}
        for uid, dimensions in EMBEDDING_DIMENSIONS.items()
    },
    RERANK_UID: {"model_type": "rerank", "type": "normal", "model_name": "stub-reranker", "model_ability": ["rerank"],
                 "model_engine": "sentence_transformers"},
    WHISPER_UID: {"model_type": "audio", "model_name": "whisper-tiny", "model_family": "whisper",
                  "model_ability": ["audio2text"]},
    TTS_UID: {"model_type": "audio", "model_name": "ChatTTS", "model_family": "ChatTTS", "model_ability": ["text2audio"]},
}  # fmt: skip


class ModelsStub(StubXinference):
    """`StubXinference` answering every model type; `requests` records what it received."""

    def _handler_class(self):
        stub = self

        class Handler(_ModelsHandler):
            server_state = stub

        return Handler


class _ModelsHandler(_Handler):
    def do_GET(self) -> None:
        if not self._authorised():
            return
        if self.path == "/v1/models":
            self._send_json(200, {"object": "list", "data": [{"id": uid, **d} for uid, d in ALL_DESCRIPTIONS.items()]})
        elif self.path.startswith("/v1/models/"):
            uid = self.path.removeprefix("/v1/models/")
            if uid in ALL_DESCRIPTIONS:
                self._send_json(200, ALL_DESCRIPTIONS[uid])
            else:
                self._send_json(400, {"detail": f"Model not found in the model list, uid: {uid}"})
        else:
            self._send_json(404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        multipart = self.headers.get("Content-Type", "").startswith("multipart/")
        body = {} if multipart else json.loads(raw or b"{}")
        self.server_state.requests.append({"path": self.path, "body": body, "headers": dict(self.headers)})
        if not self._authorised():
            return
        routes = {
            "/v1/chat/completions": self._chat,
            "/v1/embeddings": self._embeddings,
            "/v1/rerank": self._rerank,
            "/v1/audio/transcriptions": self._transcription,
            "/v1/audio/speech": self._speech,
        }
        route = routes.get(self.path)
        if route is None:
            self._send_json(404, {"detail": "Not Found"})
        else:
            route(body)

    # ---- answers ------------------------------------------------------------------------

    def _chat(self, body: dict) -> None:
        uid = body.get("model")
        if uid not in ALL_DESCRIPTIONS:
            self._send_json(404, {"detail": f"Model not found in the model list, uid: {uid}"})
        elif ALL_DESCRIPTIONS[uid]["model_type"] != "LLM":
            self._send_json(500, {"detail": f"Model {uid} is not for chat."})
        elif body.get("tools") or uid == REASONING_UID:
            self._special_chat(uid, body)
        elif body.get("stream"):
            self._stream_chat(uid)
        else:
            self._send_json(200, _chat_answer(uid))

    def _special_chat(self, uid: str, body: dict) -> None:
        """A tool call when tools are offered; reasoning first for the reasoning model."""
        message: dict = {"role": "assistant", "content": "" if body.get("tools") else "Hello!"}
        if body.get("tools"):
            message["tool_calls"] = [TOOL_CALL]
        if uid == REASONING_UID:
            message["reasoning_content"] = REASONING
        finish = "tool_calls" if body.get("tools") else "stop"
        if not body.get("stream"):
            answer = _chat_answer(uid)
            answer["choices"][0].update(message=message, finish_reason=finish)
            self._send_json(200, answer)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if "reasoning_content" in message:
            self._event("data: " + json.dumps(_chunk(uid, {"role": "assistant", "reasoning_content": REASONING}, None)))
        if message.get("content"):
            self._event("data: " + json.dumps(_chunk(uid, {"content": message["content"]}, None)))
        if "tool_calls" in message:
            self._event("data: " + json.dumps(_chunk(uid, {"tool_calls": [{"index": 0, **TOOL_CALL}]}, None)))
        self._event("data: " + json.dumps(_chunk(uid, {}, finish)))
        self._event("data: " + json.dumps({**_chunk(uid, None, None), "choices": [], "usage": USAGE}))
        self._event("data: [DONE]")

    def _embeddings(self, body: dict) -> None:
        uid = body.get("model")
        if uid not in EMBEDDING_DIMENSIONS:
            self._send_json(404, {"detail": f"Model not found in the model list, uid: {uid}"})
            return
        texts = body.get("input") or []
        texts = [texts] if isinstance(texts, str) else texts
        generator = random.Random(len(texts))
        data = [
            {"index": index, "object": "embedding",
             "embedding": [generator.gauss(0, 0.05) for _ in range(EMBEDDING_DIMENSIONS[uid])]}
            for index in range(len(texts))
        ]  # fmt: skip
        tokens = sum(len(str(text).split()) for text in texts)
        self._send_json(200, {"object": "list", "model": uid, "data": data,
                              "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})  # fmt: skip

    def _rerank(self, body: dict) -> None:
        query_words = set(str(body.get("query", "")).lower().split())
        documents = body.get("documents") or []
        scored = [
            {"index": index, "relevance_score": len(query_words & set(str(doc).lower().split())) / (len(query_words) or 1),
             "document": None}
            for index, doc in enumerate(documents)
        ]  # fmt: skip
        scored.sort(key=lambda item: item["relevance_score"], reverse=True)
        top_n = body.get("top_n") or len(scored)
        self._send_json(200, {"id": "rerank-stub", "results": scored[:top_n],
                              "meta": {"tokens": {"input_tokens": 12, "output_tokens": 0}}})  # fmt: skip

    def _transcription(self, body: dict) -> None:
        self._send_json(200, {"text": " " + TRANSCRIPT + " "})

    def _speech(self, body: dict) -> None:
        if not str(body.get("input") or "").strip():
            self._send_json(400, {"detail": "Input text is empty"})
            return
        self.send_response(200)
        self.send_header("Content-Type", "audio/mpeg")
        self.send_header("Content-Length", str(len(SPEECH)))
        self.end_headers()
        self.wfile.write(SPEECH)

"""The ways the bench makes each call: through the daemon to an installed plugin, or direct.

Every method makes one call as its user would, checks the answer is complete (a call that
answers wrongly is an error, never a fast sample) and returns what it measured, in seconds:
`total`, and for chats `ttfc` (the first chunk with text). Through the daemon, the request is
what Dify's API server sends (`POST /plugin/{tenant}/dispatch/<route>`) and the answer its
server-sent events, parsed as Dify parses them. Direct is a pooled `requests` session with
the plugin's own quick-ACK adapter, doing the least a correct client does.
"""

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from bench.cases import Server, direct_session, direct_stream
from tests.daemon.client import DaemonClient

PROMPT = "Say hello in one short sentence."
MAX_TOKENS = 32
DIRECT_CONNECTIONS = 128


class CallFailed(RuntimeError):
    """A call answered with an error, or with less than was asked for."""


@dataclass
class ThroughDaemon:
    """Calls one installed plugin through the daemon; `credentials` per role (chat, embedding, rerank)."""

    name: str
    client: DaemonClient
    plugin_id: str
    provider: str
    credentials: dict[str, dict]
    models: dict[str, str]  # the model name Dify sends, per role
    pid: int | None = None  # the plugin's process, once known

    def process_cpu(self) -> float | None:
        """CPU seconds the plugin's process has used so far (user + system)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, TypeError):
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def chat(self, stream: bool, max_tokens: int = MAX_TOKENS) -> dict[str, float]:
        start = time.perf_counter()
        first: list[float] = []

        def on_chunk(chunk: dict) -> None:
            if not first and chunk["delta"]["message"].get("content"):
                first.append(time.perf_counter() - start)

        chunks = self._dispatch("llm/invoke", "llm", "chat", on_chunk, prompt_messages=_messages(),
                                model_parameters={"max_tokens": max_tokens}, tools=[], stop=[], stream=stream)  # fmt: skip
        total = time.perf_counter() - start
        if not first or chunks[-1]["delta"].get("usage") is None:
            raise CallFailed(f"{self.name}: an incomplete chat answer: {json.dumps(chunks)[:300]}")
        return {"ttfc": first[0], "total": total, "chunks": len(chunks)}

    def embed(self, batches: list[list[str]]) -> dict[str, float]:
        start = time.perf_counter()
        dimensions = 0
        for batch in batches:
            answer = self._dispatch("text_embedding/invoke", "text-embedding", "embedding", texts=batch,
                                    input_type="document")[-1]  # fmt: skip
            if len(answer["embeddings"]) != len(batch):
                raise CallFailed(f"{self.name}: {len(answer['embeddings'])} vectors for {len(batch)} texts")
            dimensions = len(answer["embeddings"][0])
        return {"total": time.perf_counter() - start, "dimensions": dimensions}

    def rerank(self, query: str, docs: list[str]) -> dict[str, float]:
        start = time.perf_counter()
        answer = self._dispatch("rerank/invoke", "rerank", "rerank", query=query, docs=docs, score_threshold=None,
                                top_n=len(docs))[-1]  # fmt: skip
        if len(answer["docs"]) != len(docs):
            raise CallFailed(f"{self.name}: {len(answer['docs'])} ranked of {len(docs)} documents")
        return {"total": time.perf_counter() - start}

    def num_tokens(self, text: str) -> dict[str, float]:
        start = time.perf_counter()
        answer = self._dispatch("llm/num_tokens", "llm", "chat", prompt_messages=_messages(text), tools=[])[-1]
        if not answer["num_tokens"] > 0:
            raise CallFailed(f"{self.name}: no token count: {answer}")
        return {"total": time.perf_counter() - start}

    def validate(self) -> dict[str, float]:
        start = time.perf_counter()
        answer = self._dispatch("model/validate_model_credentials", "llm", "chat")[-1]
        if answer.get("result") is not True:
            raise CallFailed(f"{self.name}: validation answered {answer}")
        return {"total": time.perf_counter() - start}

    def schema(self, model_type: str, role: str) -> dict:
        return self._dispatch("model/schema", model_type, role)[-1]["model_schema"]

    def _dispatch(self, route: str, model_type: str, role: str, on_chunk: Callable[[dict], None] | None = None,
                  **fields: object) -> list[dict]:  # fmt: skip
        data = {"provider": self.provider, "model_type": model_type, "model": self.models[role],
                "credentials": self.credentials[role], **fields}  # fmt: skip
        chunks = []
        with self.client.post_dispatch(self.plugin_id, route, data) as response:
            if response.status_code != 200:
                raise CallFailed(f"{self.name}: HTTP {response.status_code}: {response.text[:300]}")
            for line in response.iter_lines(chunk_size=1 << 20):
                if not line.startswith(b"data:"):
                    continue
                event = json.loads(line[5:])
                if event.get("code") != 0:
                    raise CallFailed(f"{self.name}: {str(event.get('message'))[:500]}")
                chunks.append(event["data"])
                if on_chunk is not None:
                    on_chunk(event["data"])
        if not chunks:
            raise CallFailed(f"{self.name}: {route} answered nothing")
        return chunks


@dataclass
class Direct:
    """The same calls straight to the server."""

    server: Server
    name: str = "direct"
    session: requests.Session = field(init=False)

    def __post_init__(self) -> None:
        self.session = direct_session(self.server.api_key, quickack=True, connections=DIRECT_CONNECTIONS)

    def chat(self, stream: bool, max_tokens: int = MAX_TOKENS) -> dict[str, float]:
        body: dict = {"model": self.server.uids["chat"], "messages": _messages(), "max_tokens": max_tokens}
        if stream:
            body.update(stream=True, stream_options={"include_usage": True})
            measured = direct_stream(self.server, "/v1/chat/completions", body, self.session)
            if not measured["events"]:
                raise CallFailed("direct: an empty stream")
            return {"ttfc": measured["ttfc"], "total": measured["total"], "cpu": measured["cpu"]}
        start, cpu = time.perf_counter(), time.thread_time()
        answer = self._post("/v1/chat/completions", body)
        if not answer["choices"][0]["message"]["content"]:
            raise CallFailed(f"direct: no text in {answer}")
        total = time.perf_counter() - start
        return {"ttfc": total, "total": total, "cpu": time.thread_time() - cpu}

    def embed(self, batches: list[list[str]]) -> dict[str, float]:
        start, cpu = time.perf_counter(), time.thread_time()
        for batch in batches:
            answer = self._post("/v1/embeddings", {"model": self.server.uids["embedding"], "input": batch})
            if len(answer["data"]) != len(batch):
                raise CallFailed(f"direct: {len(answer['data'])} vectors for {len(batch)} texts")
        return {"total": time.perf_counter() - start, "cpu": time.thread_time() - cpu}

    def rerank(self, query: str, docs: list[str]) -> dict[str, float]:
        start, cpu = time.perf_counter(), time.thread_time()
        body = {"model": self.server.uids["rerank"], "query": query, "documents": docs, "return_documents": False,
                "top_n": len(docs)}  # fmt: skip
        answer = self._post("/v1/rerank", body)
        if len(answer["results"]) != len(docs):
            raise CallFailed(f"direct: {len(answer['results'])} ranked of {len(docs)} documents")
        return {"total": time.perf_counter() - start, "cpu": time.thread_time() - cpu}

    def validate(self) -> dict[str, float]:
        """What the plugin's validation sends: the model's description, then a 5-token chat."""
        start, cpu = time.perf_counter(), time.thread_time()
        uid = self.server.uids["chat"]
        described = self.session.get(f"{self.server.url}/v1/models/{uid}")
        described.raise_for_status()
        self._post("/v1/chat/completions", {"model": uid, "messages": _messages("Hi"), "max_tokens": 5})
        return {"total": time.perf_counter() - start, "cpu": time.thread_time() - cpu}

    def _post(self, path: str, body: dict) -> dict:
        response = self.session.post(self.server.url + path, json=body)
        if response.status_code != 200:
            raise CallFailed(f"direct: HTTP {response.status_code}: {response.text[:300]}")
        return response.json()


def _messages(text: str = PROMPT) -> list[dict]:
    return [{"role": "user", "content": text}]

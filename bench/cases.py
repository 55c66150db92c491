"""The benchmark cases: each sends the same request directly and through the plugin.

"direct" is a pooled `requests.Session` doing the least a correct client must (send the
JSON, parse the JSON, for streams split the SSE lines and parse each event). "plugin"
is the plugin's public SDK entry point in this process (a fresh model object per call,
as the SDK makes one per request). "runtime" is the same call through `python -m main`
over stdio, as Dify's daemon drives it: the difference to "plugin" is the SDK's framing.
"""

import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests
from dify_plugin.entities.model.message import UserPromptMessage
from requests.adapters import HTTPAdapter

from bench.measure import Row, interleave, median, rows_from
from bench.stdio_client import PluginProcess, invoke_llm_request, llm_num_tokens_request
from models.common.transport import QuickAckAdapter
from models.llm.llm import XinferenceLargeLanguageModel
from models.rerank.rerank import XinferenceRerankModel
from models.text_embedding.text_embedding import XinferenceTextEmbeddingModel

PROMPT = "Say hello in one short sentence."
STREAM_CHUNKS = 1000
PACED_CHUNK_MICROSECONDS = 500  # 2,000 tokens/s: faster than any real single-stream decode
EMBEDDING_TEXTS = 10_000
# The testbed's tiny embedding model runs on the same 2 CPU cores (~50-300 texts/s), so
# 10,000 texts would take minutes per call there: it gets fewer, judged the same way.
EMBEDDING_TEXTS_TESTBED = 1_000
RERANK_DOCUMENTS = 200
NUM_TOKENS_CHARACTERS = 100_000


@dataclass
class Server:
    name: str  # "stub", "stub-xtcp" (Xinference's TCP behaviour) or "testbed"
    url: str
    uids: dict
    api_key: str | None = None
    is_stub: bool = False
    session: requests.Session = field(init=False)

    def __post_init__(self) -> None:
        self.session = direct_session(self.api_key)
        self.quickack_session = direct_session(self.api_key, quickack=True)

    @property
    def delays_acks(self) -> bool:
        """Whether the server writes like Xinference (Nagle on), so delayed ACKs matter."""
        return self.name != "stub"

    def credentials(self, kind: str, uid: str | None = None, **extra: object) -> dict:
        credentials = {"server_url": self.url, "model_uid": uid or self.uids[kind]}
        if self.api_key:
            credentials["api_key"] = self.api_key
        credentials.update({k: str(v) for k, v in extra.items()})
        return credentials

    # The stub counts the requests it serves.
    def reset_counts(self) -> None:
        self.session.post(self.url + "/_bench/reset").raise_for_status()

    def counts(self) -> dict:
        return self.session.get(self.url + "/_bench/stats").json()


def direct_session(api_key: str | None = None, quickack: bool = False, connections: int = 32) -> requests.Session:
    """A plain pooled session; with `quickack`, mounted with the plugin's own adapter, which
    sets TCP_QUICKACK once a request is sent (see models/common/transport.py)."""
    session = requests.Session()
    adapter = (QuickAckAdapter if quickack else HTTPAdapter)(pool_maxsize=connections, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    if api_key:
        session.headers["Authorization"] = f"Bearer {api_key}"
    return session


@dataclass
class Settings:
    quick: bool
    runtime: PluginProcess | None  # None: skip the stdio variant
    before_root: str | None = None  # another checkout of the plugin to compare with (embedding_dify)

    def n(self, full: int, quick: int) -> int:
        return quick if self.quick else full


# ---- direct clients ------------------------------------------------------------------------


def direct_json(server: Server, path: str, body: dict, session: requests.Session | None = None) -> dict:
    response = (session or server.session).post(server.url + path, json=body)
    response.raise_for_status()
    return response.json()


def direct_stream(
    server: Server, path: str, body: dict, session: requests.Session | None = None
) -> dict[str, float]:
    """SSE over a pooled connection: time to the first content, to the end, and events seen."""
    start, cpu = time.perf_counter(), time.thread_time()
    first = None
    events = 0
    with (session or server.session).post(server.url + path, json=body, stream=True) as response:
        response.raise_for_status()
        pending = b""
        for chunk in response.iter_content(chunk_size=None):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    break
                event = json.loads(data)
                events += 1
                if first is None:
                    choices = event.get("choices") or [{}]
                    delta = choices[0].get("delta") or {}
                    if delta.get("content") or choices[0].get("text"):
                        first = time.perf_counter() - start
    total = time.perf_counter() - start
    return {"ttfc": first if first is not None else total, "total": total, "events": events,
            "cpu": time.thread_time() - cpu}


# ---- plugin clients ------------------------------------------------------------------------


def plugin_chat(server: Server, uid: str, max_tokens: int, stream: bool) -> dict[str, float]:
    start, cpu = time.perf_counter(), time.thread_time()
    first = None
    chunks = 0
    text = []
    model = XinferenceLargeLanguageModel(model_schemas=[])
    for chunk in model.invoke(
        model=uid,
        credentials=server.credentials("chat", uid),
        prompt_messages=[UserPromptMessage(content=PROMPT)],
        model_parameters={"max_tokens": max_tokens},
        stream=stream,
    ):
        chunks += 1
        if chunk.delta.message.content:
            text.append(chunk.delta.message.content)
            if first is None:
                first = time.perf_counter() - start
    total = time.perf_counter() - start
    if not text:
        raise RuntimeError("the plugin answered no text")
    return {"ttfc": first if first is not None else total, "total": total, "events": chunks,
            "cpu": time.thread_time() - cpu}


def runtime_chat(settings: Settings, server: Server, uid: str, max_tokens: int, stream: bool) -> dict[str, float]:
    request = invoke_llm_request(
        server.credentials("chat", uid), uid, [{"role": "user", "content": PROMPT}], {"max_tokens": max_tokens}, stream
    )
    first: list[float] = []
    start = time.perf_counter()

    def on_chunk(chunk: dict) -> None:
        if not first and chunk["delta"]["message"]["content"]:
            first.append(time.perf_counter() - start)

    chunks = settings.runtime.call(request, on_chunk)
    total = time.perf_counter() - start
    return {"ttfc": first[0] if first else total, "total": total, "events": len(chunks)}


# ---- the cases -----------------------------------------------------------------------------


def chat_blocking(settings: Settings, server: Server, back_to_back: bool = False) -> list[Row]:
    uid = server.uids["chat"]
    body = {"model": uid, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 32}
    variants: dict[str, Callable[[], dict]] = {
        "direct": lambda: _timed(lambda: direct_json(server, "/v1/chat/completions", body)),
        "plugin": lambda: plugin_chat(server, uid, 32, stream=False),
    }
    if server.delays_acks:
        variants["direct_quickack"] = lambda: _timed(
            lambda: direct_json(server, "/v1/chat/completions", body, server.quickack_session))
    if settings.runtime:
        variants["runtime"] = lambda: runtime_chat(settings, server, uid, 32, stream=False)
    if back_to_back:
        iterations, burst = (settings.n(60, 4), 5) if server.is_stub else (settings.n(30, 3), 5)
    else:
        iterations, burst = (settings.n(300, 20), 1) if server.is_stub else (settings.n(100, 10), 1)
    samples = interleave(variants, iterations, warmup=settings.n(10, 3), burst=burst)
    case = "chat, blocking" + (", back-to-back" if back_to_back else "")
    row = rows_from(samples, case, server.name, "total")
    if server.is_stub:
        row.target, row.met = "≤ +1 ms", row.added <= 0.001
    else:
        row.target, row.met = "≤ 1.02×", row.ratio <= 1.02
    if back_to_back:
        row.note = f"calls 2-{burst} of bursts of {burst} on one connection"
    return [row, *_versus_quickack(samples, case, server, "total"), _cpu_row(samples, case, server)]


def chat_stream(settings: Settings, server: Server, paced: bool = False, back_to_back: bool = False) -> list[Row]:
    if server.is_stub and not back_to_back:
        uid = server.uids["chat"] + (f"~{PACED_CHUNK_MICROSECONDS}" if paced else "")
        chunks = STREAM_CHUNKS
    else:
        uid, chunks = server.uids["chat"], 32
    body = {
        "model": uid,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": chunks,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    variants: dict[str, Callable[[], dict]] = {
        "direct": lambda: direct_stream(server, "/v1/chat/completions", body),
        "plugin": lambda: plugin_chat(server, uid, chunks, stream=True),
    }
    if server.delays_acks:
        variants["direct_quickack"] = lambda: direct_stream(
            server, "/v1/chat/completions", body, server.quickack_session)
    if settings.runtime:
        variants["runtime"] = lambda: runtime_chat(settings, server, uid, chunks, stream=True)
    burst = 1
    if paced:
        iterations = settings.n(8, 2)
    elif back_to_back:
        iterations, burst = settings.n(30, 3), 5
    else:
        iterations = settings.n(40, 4) if server.is_stub else settings.n(60, 6)
    samples = interleave(variants, iterations, warmup=settings.n(3, 1), burst=burst)
    case = "chat, stream" + (f" ({1e6 / PACED_CHUNK_MICROSECONDS:,.0f} chunks/s)" if paced else "")
    case += ", back-to-back" if back_to_back else ""
    events = median(samples["direct"]["events"])
    rows = []
    if not paced:
        ttfc = rows_from(samples, case, server.name, "ttfc", label="first chunk", target="≤ +2 ms")
        ttfc.met = ttfc.added <= 0.002
        rows += [ttfc, *_versus_quickack(samples, case, server, "ttfc", "first chunk")]
    total = rows_from(samples, case, server.name, "total", note=f"{events:.0f} events")
    rows += [total, *_versus_quickack(samples, case, server, "total"), _cpu_row(samples, case, server)]
    if back_to_back:
        total.note += f"; calls 2-{burst} of bursts of {burst} on one connection"
    elif server.is_stub and not paced:
        per_chunk = Row(
            case=case, server=server.name, metric="added per chunk", unit="s",
            plugin=total.added / chunks, runtime=(total.runtime - total.direct) / chunks if total.runtime else None,
            target="≤ 50 µs", note=f"{chunks} chunks", samples=total.samples,
        )
        per_chunk.met = per_chunk.plugin <= 50e-6
        rows.append(per_chunk)
    else:
        # Throughput where the server sets the pace (a real model, or the paced stub).
        throughput = Row(
            case=case, server=server.name, metric="throughput vs direct", unit="ratio",
            direct=1.0, plugin=total.direct / total.plugin,
            runtime=total.direct / total.runtime if total.runtime else None,
            target="≥ 0.95×", samples=total.samples,
        )
        throughput.met = throughput.plugin >= 0.95
        rows.append(throughput)
    return rows


def embedding(settings: Settings, server: Server) -> list[Row]:
    model_class = XinferenceTextEmbeddingModel
    uid = server.uids["embedding"]
    count = settings.n(EMBEDDING_TEXTS, 1000) if server.is_stub else settings.n(EMBEDDING_TEXTS_TESTBED, 200)
    texts = [f"Short text number {i} about topic {i % 97}." for i in range(count)]
    credentials = server.credentials("embedding")

    def plugin() -> dict:
        start = time.perf_counter()
        result = model_class(model_schemas=[]).invoke(uid, credentials, texts)
        elapsed = time.perf_counter() - start
        if len(result.embeddings) != count:
            raise RuntimeError(f"the plugin returned {len(result.embeddings)} embeddings for {count} texts")
        return {"total": elapsed}

    variants = {
        "direct": lambda: _timed(lambda: direct_json(server, "/v1/embeddings", {"model": uid, "input": texts})),
        "plugin": plugin,
    }
    # Warm both sides (connections, the cached description) with a few texts.
    model_class(model_schemas=[]).invoke(uid, credentials, texts[:10])
    direct_json(server, "/v1/embeddings", {"model": uid, "input": texts[:10]})
    iterations = settings.n(7, 1) if server.is_stub else settings.n(3, 1)
    samples = interleave(variants, iterations, warmup=0)
    row = rows_from(samples, f"embedding {count:,} texts", server.name, "total", target="≤ 1.0×")
    if server.is_stub:
        row.target = "(judged on testbed)"
        server.reset_counts()
        plugin()
        row.extra["http_requests"] = server.counts()["requests"]
        requests_made = server.counts()["requests"].get("POST /v1/embeddings", 0)
        row.note = f"{requests_made} POSTs vs 1 direct; server costs nothing here"
    else:
        row.met = row.ratio <= 1.0
    return [row]


def rerank(settings: Settings, server: Server) -> list[Row]:
    model_class = XinferenceRerankModel
    uid = server.uids["rerank"]
    query = "Which document talks about the weather in Paris?"
    docs = [f"Document {i}: some text about subject {i % 13}, city {i % 7} and weather." for i in range(RERANK_DOCUMENTS)]
    credentials = server.credentials("rerank")

    def plugin() -> dict:
        start = time.perf_counter()
        result = model_class(model_schemas=[]).invoke(uid, credentials, query, docs)
        elapsed = time.perf_counter() - start
        if len(result.docs) != len(docs):
            raise RuntimeError(f"the plugin returned {len(result.docs)} results for {len(docs)} documents")
        return {"total": elapsed}

    body = {"model": uid, "query": query, "documents": docs}
    variants = {"direct": lambda: _timed(lambda: direct_json(server, "/v1/rerank", body)), "plugin": plugin}
    iterations = settings.n(100, 5) if server.is_stub else settings.n(30, 3)
    samples = interleave(variants, iterations, warmup=2)
    row = rows_from(samples, f"rerank {RERANK_DOCUMENTS} documents", server.name, "total", target="≤ 1.05×")
    if server.is_stub:
        row.target = "(judged on testbed)"
    else:
        row.met = row.ratio <= 1.05
    return [row]


def num_tokens(settings: Settings, server: Server) -> list[Row]:
    piece = "The quick brown fox jumps over the lazy dog, 42 times; naïve café — 快速的狐狸。 "
    text = (piece * (NUM_TOKENS_CHARACTERS // len(piece) + 1))[:NUM_TOKENS_CHARACTERS]
    # A server URL no other case used: a describe call would be counted by the stub.
    credentials = dict(server.credentials("chat"), server_url=server.url.replace("127.0.0.1", "localhost"))
    uid = credentials["model_uid"]

    def plugin() -> dict:
        start = time.perf_counter()
        XinferenceLargeLanguageModel(model_schemas=[]).get_num_tokens(uid, credentials, [UserPromptMessage(content=text)])
        return {"total": time.perf_counter() - start}

    variants = {"plugin": plugin}
    if settings.runtime:
        request = llm_num_tokens_request(credentials, uid, [{"role": "user", "content": text}])
        variants["runtime"] = lambda: _timed(lambda: settings.runtime.call(request))
    server.reset_counts()
    samples = interleave(variants, settings.n(30, 3), warmup=1)
    requests_made = server.counts()["total"]
    row = rows_from(samples, "get_num_tokens, 100,000 chars", server.name, "total", target="≤ 20 ms, 0 requests")
    row.met = row.plugin <= 0.020 and requests_made == 0
    row.note = f"{requests_made} HTTP requests"
    return [row]


def requests_per_invoke(settings: Settings, server: Server) -> list[Row]:
    uid = server.uids["chat"]
    calls = settings.n(50, 5)
    rows = []
    for stream in (False, True):
        plugin_chat(server, uid, 8, stream)  # warm: the description is cached from here on
        server.reset_counts()
        for _ in range(calls):
            plugin_chat(server, uid, 8, stream)
        in_process = server.counts()
        runtime_count = None
        if settings.runtime:
            runtime_chat(settings, server, uid, 8, stream)
            server.reset_counts()
            for _ in range(calls):
                runtime_chat(settings, server, uid, 8, stream)
            runtime_count = server.counts()["total"] / calls
        row = Row(
            case="HTTP requests per invoke", server=server.name,
            metric="stream" if stream else "blocking", unit="count",
            direct=1.0, plugin=in_process["total"] / calls, runtime=runtime_count, target="= 1",
            samples=calls, extra={"requests": in_process["requests"], "connections": in_process["connections"]},
        )
        row.met = row.plugin == 1.0 and (runtime_count in (None, 1.0))
        row.note = f"{in_process['connections']} new connections in {calls} calls"
        rows.append(row)
    return rows


def cold_start_and_memory(settings: Settings, server: Server) -> list[Row]:
    starts = []
    for _ in range(settings.n(5, 1)):
        with PluginProcess() as process:
            starts.append(process.wait_for_heartbeat())
    calls = settings.n(1000, 100)
    uid = server.uids["chat"]
    messages = [{"role": "user", "content": PROMPT}]
    blocking = invoke_llm_request(server.credentials("chat"), uid, messages, {"max_tokens": 8}, False)
    streamed = invoke_llm_request(server.credentials("chat"), uid, messages, {"max_tokens": 100}, True)
    with PluginProcess() as process:
        process.wait_for_heartbeat()
        rss_start = process.rss_bytes()
        for number in range(calls):  # alternately blocking and a 100-chunk stream
            process.call(streamed if number % 2 else blocking)
        rss_after = process.rss_bytes()
    return [
        Row(case="python -m main", server=server.name, metric="cold start to heartbeat", unit="s",
            runtime=median(starts), samples=len(starts)),
        Row(case="python -m main", server=server.name, metric="RSS after start", unit="bytes", runtime=rss_start),
        Row(case="python -m main", server=server.name, metric=f"RSS after {calls:,} calls", unit="bytes",
            runtime=rss_after, note=f"+{(rss_after - rss_start) / 2**20:.1f} MiB; half blocking, half 100-chunk streams"),
    ]


def transport(settings: Settings, server: Server) -> list[Row]:
    """Delayed ACKs on a reused connection, seen on the wire (raw sockets, no plugin).

    Back-to-back blocking chats on one keep-alive connection; for each response, the time
    between its first and its last TCP segment. Xinference 4.1.0 sends headers and body
    as two segments with Nagle on, so a delayed ACK of the first holds the second ~40 ms.
    Server compute does not enter this gap, so it reads true on a busy machine too.
    Modes: pooled as is; pooled with TCP_QUICKACK set once the request is sent (what the
    plugin's HTTP layer does); a fresh connection per request.
    """
    host, port = server.url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    uid = server.uids["chat"]
    payload = json.dumps({"model": uid, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 32}).encode()
    auth = f"Authorization: Bearer {server.api_key}\r\n" if server.api_key else ""
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"{auth}Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload

    def run(mode: str, calls: int) -> tuple[list[float], list[float]]:
        sock = None
        gaps, totals = [], []
        for _ in range(calls + 1):
            if sock is None or mode == "fresh":
                if sock is not None:
                    sock.close()
                sock = socket.create_connection((host, int(port)))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            start = time.perf_counter()
            sock.sendall(request)
            if mode == "quickack":
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            arrivals, received = [], b""
            while True:
                data = sock.recv(65536)
                if not data:
                    raise RuntimeError("the server closed the connection")
                arrivals.append(time.perf_counter())
                received += data
                head, _, body = received.partition(b"\r\n\r\n")
                length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")]
                if length and len(body) >= length[0]:
                    break
            gaps.append(arrivals[-1] - arrivals[0])
            totals.append(arrivals[-1] - start)
        sock.close()
        return gaps[1:], totals[1:]  # the first call of a connection starts in quick-ACK mode

    calls = settings.n(20, 4)
    rows = []
    for mode in ("pooled", "quickack", "fresh"):
        gaps, totals = run(mode, calls)
        late = sum(1 for gap in gaps if gap > 0.020)
        rows.append(Row(
            case="transport: headers→body gap", server=server.name, metric=mode, unit="s",
            direct=median(gaps), samples=len(gaps),
            note=f"{late}/{len(gaps)} responses > 20 ms apart; call median {median(totals) * 1e3:.1f} ms",
        ))
    return rows


def _versus_quickack(samples: dict, case: str, server: Server, metric: str, label: str | None = None) -> list[Row]:
    """The plugin against a direct client that also asks for quick ACKs: its own cost
    with the delayed-ACK stall taken out of the baseline too (not judged)."""
    if "direct_quickack" not in samples:
        return []
    remapped = {"direct": samples["direct_quickack"], "plugin": samples["plugin"]}
    return [rows_from(remapped, case, server.name, metric, label=f"{label or metric} vs direct+QUICKACK",
                      note="baseline: plain session with the plugin's QUICKACK adapter")]


def _cpu_row(samples: dict, case: str, server: Server) -> Row:
    """This process's CPU per call: less disturbed by a busy machine than wall time."""
    return rows_from(samples, case, server.name, "cpu", label="client CPU",
                     note="bench process only (not the runtime's)")


def _timed(work: Callable[[], object]) -> dict[str, float]:
    """Wall time, and this process's CPU time (one OS thread: gevent runs everything on it)."""
    start, cpu = time.perf_counter(), time.thread_time()
    work()
    return {"total": time.perf_counter() - start, "cpu": time.thread_time() - cpu}

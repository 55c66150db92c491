"""Embeddings as Dify's knowledge-base indexing drives them: through `python -m main` over stdio.

Dify reads `max_chunks` from the model schema, then embeds the texts in calls of that many,
one after another (`CacheEmbedding.embed_documents`). Beside it: one direct request with
all the texts, as JSON numbers (what a plain client gets) and as base64. Per leg: wall
time, HTTP requests, bytes per vector Xinference→plugin and plugin→daemon, and the longest
stdout line (the daemon kills a plugin whose line is longer than 5,242,880 bytes).

`--before DIR` adds the same run from another checkout of the plugin (e.g. the commit
before a change: `git archive <commit> | tar -x -C DIR`), started with the same Python.
"""

import base64
import math
import time
from array import array
from pathlib import Path

from bench.cases import Server, Settings
from bench.measure import Row
from bench.stdio_client import PluginProcess, embedding_schema_request, invoke_embedding_request

DAEMON_LINE_LIMIT = 5_242_880
TEXTS = 10_000
# all-MiniLM-L6-v2 on the testbed's two shared CPU cores manages ~15-100 texts/s, so
# 10,000 texts would take minutes per run there: it gets fewer (the tiny 1,024-dim model
# takes the full 10,000).
TEXTS_TESTBED_MINILM = 1_000
BATCH_SIZE = 256  # the plugin's default `embedding_batch_size`


def embedding_dify_style(settings: Settings, server: Server) -> list[Row]:
    rows: list[Row] = []
    for role in ("embedding", "embedding_prompts"):
        uid = server.uids.get(role) or (f"{server.uids['embedding']}-1024" if server.is_stub and role != "embedding" else None)
        if uid is None:
            continue
        full = TEXTS_TESTBED_MINILM if role == "embedding" and not server.is_stub else TEXTS
        rows += _one_model(settings, server, uid, settings.n(full, 300))
    return rows


def _one_model(settings: Settings, server: Server, uid: str, count: int) -> list[Row]:
    texts = [f"Chunk {i} of a knowledge base document about topic {i % 97}, paragraph {i % 13}." for i in range(count)]
    # A slow CPU server queues the concurrent batches: give them time (a throughput bench).
    credentials = server.credentials("embedding", uid, invoke_timeout=600)
    dims = _dimensions(server, uid)
    case = f"embedding, Dify-style, {count:,} texts × {dims} dims"

    measured: dict[str, dict] = {}
    measured["direct"] = _direct(server, uid, texts, base64_vectors=False)
    measured["direct base64"] = _direct(server, uid, texts, base64_vectors=True)
    runtimes = {"after": settings.runtime}
    before = None
    if settings.before_root:
        before = PluginProcess(root=Path(settings.before_root))
        before.wait_for_heartbeat()
        runtimes["before"] = before
    try:
        for name, process in runtimes.items():
            if process is not None:
                measured[name] = _dify_style(server, process, credentials, uid, texts)
    finally:
        if before is not None:
            before.close()

    direct = measured["direct"]
    if not server.is_stub:
        # Not countable on a real server; the plugin's requests carry the direct ones' bodies.
        for name, encoding in (("after", "direct base64"), ("before", "direct")):
            if name in measured:
                measured[name]["bytes_in_per_vector"] = measured[encoding]["bytes_per_vector"]
                measured[name]["bytes_in_note"] = f"as the {encoding} request (same body)"
    rows = []
    for name in ("after", "before"):
        run = measured.get(name)
        if run is None:
            continue
        label = f"{name} ({run['max_chunks']} texts per call)"
        wall = Row(case=case, server=server.name, metric=f"wall time, {label}", unit="s",
                   direct=direct["seconds"], runtime=run["seconds"], samples=1,
                   note=f"direct base64: {_ms(measured['direct base64']['seconds'])}")
        if name == "after" and not server.is_stub:
            wall.target, wall.met = "≤ 1.0×", wall.runtime_ratio <= 1.0
        rows += [
            wall,
            Row(case=case, server=server.name, metric=f"HTTP requests, {name}", unit="count",
                direct=1, runtime=run["requests"], samples=1,
                note="counted by the stub" if server.is_stub else "batches of 256 per call"),
            Row(case=case, server=server.name, metric=f"bytes per vector Xinference→plugin, {name}", unit="B",
                direct=direct["bytes_per_vector"], runtime=run["bytes_in_per_vector"], samples=1,
                note=run["bytes_in_note"]),
            Row(case=case, server=server.name, metric=f"bytes per vector plugin→daemon, {name}", unit="B",
                runtime=run["bytes_out_per_vector"], samples=1),
        ]
        line = Row(case=case, server=server.name, metric=f"longest stdout line, {name}", unit="B",
                   runtime=run["longest_line"], samples=1, target=f"< {DAEMON_LINE_LIMIT:,} B")
        line.met = run["longest_line"] < DAEMON_LINE_LIMIT
        if not line.met:
            line.note = "the daemon would kill the plugin"
        rows.append(line)
    rows.append(Row(case=case, server=server.name, metric="bytes per vector, direct base64", unit="B",
                    direct=measured["direct base64"]["bytes_per_vector"], samples=1,
                    note="base64 ignored (server < 4.0)" if not measured["direct base64"]["packed"] else ""))
    return rows


def _dify_style(server: Server, process: PluginProcess, credentials: dict, uid: str, texts: list[str]) -> dict:
    """Schema for max_chunks, then calls of that many texts one after another."""
    process.call(invoke_embedding_request(credentials, uid, texts[:10]))  # warm: description, learned prompts
    if server.is_stub:
        server.reset_counts()
    process.reset_line_counts()
    start = time.perf_counter()
    schema = process.call(embedding_schema_request(credentials, uid))[-1]["model_schema"]
    max_chunks = int(schema["model_properties"].get("max_chunks") or 1)
    vectors = 0
    calls = []
    for first in range(0, len(texts), max_chunks):
        batch = texts[first : first + max_chunks]
        answer = process.call(invoke_embedding_request(credentials, uid, batch))[-1]
        vectors += len(answer["embeddings"])
        calls.append(len(batch))
    seconds = time.perf_counter() - start
    if vectors != len(texts):
        raise RuntimeError(f"{vectors} vectors for {len(texts)} texts")
    run = {
        "seconds": seconds, "max_chunks": max_chunks, "longest_line": process.longest_line,
        "bytes_out_per_vector": process.session_bytes / len(texts),
        "requests": sum(math.ceil(size / BATCH_SIZE) for size in calls),
        "bytes_in_per_vector": None, "bytes_in_note": "",
    }
    if server.is_stub:
        counts = server.counts()
        run["requests"] = counts["requests"].get("POST /v1/embeddings", 0)
        run["bytes_in_per_vector"] = counts["body_bytes"].get("POST /v1/embeddings", 0) / len(texts)
        run["bytes_in_note"] = "counted by the stub"
    return run


def _direct(server: Server, uid: str, texts: list[str], base64_vectors: bool) -> dict:
    """One request with every text: JSON parsed, base64 vectors unpacked to floats."""
    body = {"model": uid, "input": texts}
    if base64_vectors:
        body["encoding_format"] = "base64"
    start = time.perf_counter()
    response = server.session.post(server.url + "/v1/embeddings", json=body)
    response.raise_for_status()
    data = response.json()["data"]
    packed = bool(data) and isinstance(data[0]["embedding"], str)
    if packed:
        for item in data:
            item["embedding"] = array("f", base64.b64decode(item["embedding"])).tolist()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "bytes_per_vector": len(response.content) / len(texts), "packed": packed}


def _dimensions(server: Server, uid: str) -> int:
    return int(server.session.get(f"{server.url}/v1/models/{uid}").json().get("dimensions") or 0)


def _ms(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1e3:.1f} ms"

"""Per call type: the plugin through the daemon, the null plugin through the daemon, and
direct HTTP (and the official plugin, when installed), interleaved in one run.

The plugin's own cost is plugin − null − direct: null is what the daemon and the SDK cost
with no plugin work at all, direct what the server and a plain client cost. It is given as
the median of that difference per iteration (the calls of one iteration run close together,
so a machine whose speed drifts cancels out) and as the difference of the medians.
"""

import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.daemon.paths import Direct, ThroughDaemon
from bench.measure import interleave

RERANK_DOCUMENTS = 100
RERANK_QUERY = "Which document talks about the weather in Paris?"
EMBEDDING_TEXTS = 1000
NUM_TOKENS_CHARACTERS = 10_000


@dataclass
class Stats:
    p50: float
    p95: float
    samples: int

    @classmethod
    def of(cls, values: list[float]) -> "Stats":
        ordered = sorted(values)
        # Nearest rank: with few samples p95 is the slowest one, never an interpolation past it.
        rank = max(0, -(-95 * len(ordered) // 100) - 1)
        return cls(statistics.median(ordered), ordered[rank], len(ordered))


@dataclass
class CallRow:
    """One metric of one call type, every path side by side."""

    call: str
    metric: str
    stats: dict[str, Stats]  # by path: plugin, null, direct, official
    own_paired: float | None = None  # median over iterations of plugin − null − direct
    own_of_medians: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""
    official_own_paired: float | None = None
    # CPU seconds per call: each plugin's process (the daemon's share is not in it), and the
    # direct client's; own_cpu = plugin − null − direct, what a busy machine disturbs least.
    cpu: dict[str, float] = field(default_factory=dict)
    own_cpu: float | None = None


@dataclass
class Settings:
    quick: bool
    # The stub costs nothing, so the chats' own cost is judged there (on the testbed the
    # server's own spread, tens of ms on a busy machine, hides a millisecond); the embedding
    # import, a share of the server's time, is judged on the testbed.
    stub: bool
    embedding_texts: int = EMBEDDING_TEXTS

    def n(self, full: int, quick: int) -> int:
        return quick if self.quick else full


Variant = Callable[[], dict[str, float]]


def run_call(
    call: str, paths: Mapping[str, ThroughDaemon | Direct], variant: Callable[[Any], Variant], iterations: int,
    metrics: dict[str, str],
    warmup: int = 2,
) -> list[CallRow]:
    """Interleaves `variant(path)` of every path; one row per metric ({metric: label}), the
    last with the CPU each path took per call."""
    variants = {name: variant(path) for name, path in paths.items()}
    cpu_before = {name: path.process_cpu() for name, path in paths.items() if isinstance(path, ThroughDaemon)}
    samples = interleave(variants, iterations, warmup=warmup)
    calls = iterations + warmup
    rows = []
    for metric, label in metrics.items():
        stats = {name: Stats.of(values[metric]) for name, values in samples.items() if values.get(metric)}
        row = CallRow(call=call, metric=label, stats=stats)
        row.own_paired = _paired_own(samples, "plugin", metric)
        row.official_own_paired = _paired_own(samples, "official", metric)
        if "plugin" in stats and "null" in stats:
            row.own_of_medians = stats["plugin"].p50 - stats["null"].p50 - (stats["direct"].p50 if "direct" in stats else 0.0)
        rows.append(row)
    cpu = rows[-1].cpu
    for name, before in cpu_before.items():
        after = paths[name].process_cpu()
        if before is not None and after is not None:
            cpu[name] = (after - before) / calls
    if samples.get("direct", {}).get("cpu"):
        cpu["direct"] = statistics.median(samples["direct"]["cpu"])
    if "plugin" in cpu and "null" in cpu:
        rows[-1].own_cpu = cpu["plugin"] - cpu["null"] - cpu.get("direct", 0.0)
    return rows


def _paired_own(samples: dict, name: str, metric: str) -> float | None:
    through, null = samples.get(name, {}).get(metric), samples.get("null", {}).get(metric)
    if not through or not null:
        return None
    direct = samples.get("direct", {}).get(metric) or [0.0] * len(through)
    return statistics.median(t - n - d for t, n, d in zip(through, null, direct))


Paths = dict[str, ThroughDaemon | Direct]  # plugin, null, direct, and maybe official


def chat_blocking(settings: Settings, paths: Paths) -> list[CallRow]:
    rows = run_call("chat, blocking", paths, lambda path: _bound(path.chat, False), settings.n(60, 3), {"total": "total"})
    _judge(rows[0], "≤ 1 ms", lambda row: row.own_paired <= 0.001, "stub", settings)
    return rows


def chat_stream(settings: Settings, paths: Paths) -> list[CallRow]:
    rows = run_call("chat, stream", paths, lambda path: _bound(path.chat, True), settings.n(60, 3),
                    {"ttfc": "first chunk", "total": "whole stream"})  # fmt: skip
    _judge(rows[0], "≤ 1 ms", lambda row: row.own_paired <= 0.001, "stub", settings)
    return rows


def embedding_import(settings: Settings, paths: Paths) -> list[CallRow]:
    """The texts in calls of the plugin's `max_chunks`, one after another, as Dify's indexing sends them."""
    batch = int(paths["plugin"].schema("text-embedding", "embedding")["model_properties"]["max_chunks"])
    texts = [f"Chunk {i} of a knowledge base document about topic {i % 97}, paragraph {i % 13}." for i in
             range(settings.embedding_texts)]  # fmt: skip
    batches = [texts[start : start + batch] for start in range(0, len(texts), batch)]
    rows = run_call(f"embedding, {len(texts):,} texts in Dify's batches of {batch}",
                    paths, lambda path: _bound(path.embed, batches), settings.n(3, 1), {"total": "total"}, warmup=0)  # fmt: skip
    _judge(rows[0], "≤ 5 % of the plugin's time", lambda row: row.own_paired <= 0.05 * row.stats["plugin"].p50,
           "testbed", settings)  # fmt: skip
    rows[0].note = f"{len(batches)} dispatches per import; direct: one request per batch"
    return rows


def rerank(settings: Settings, paths: Paths) -> list[CallRow]:
    docs = [f"Document {i}: some text about subject {i % 13}, city {i % 7} and weather." for i in range(RERANK_DOCUMENTS)]
    return run_call(f"rerank, {RERANK_DOCUMENTS} documents",
                    paths, lambda path: _bound(path.rerank, RERANK_QUERY, docs), settings.n(40, 3), {"total": "total"})  # fmt: skip


def num_tokens(settings: Settings, paths: Paths) -> list[CallRow]:
    text = ("The quick brown fox jumps over the lazy dog. " * (NUM_TOKENS_CHARACTERS // 45 + 1))[:NUM_TOKENS_CHARACTERS]
    through = {name: path for name, path in paths.items() if isinstance(path, ThroughDaemon)}
    rows = run_call(f"get_num_tokens, {NUM_TOKENS_CHARACTERS:,} characters",
                    through, lambda path: _bound(path.num_tokens, text), settings.n(60, 3), {"total": "total"})  # fmt: skip
    rows[0].note = "no HTTP request: no direct counterpart"
    return rows


def validate_credentials(settings: Settings, paths: Paths) -> list[CallRow]:
    rows = run_call("validate_credentials (LLM)", paths, lambda path: _bound(path.validate), settings.n(40, 3),
                    {"total": "total"})  # fmt: skip
    rows[0].note = "direct: the model's description and a 5-token chat, as the plugin's check sends"
    return rows


CASES = (chat_blocking, chat_stream, embedding_import, rerank, num_tokens, validate_credentials)


def _bound(method: Callable[..., dict], *args: object) -> Variant:
    return lambda: method(*args)


def _judge(row: CallRow, target: str, met: Callable[[CallRow], bool], judged_on: str, settings: Settings) -> None:
    """Sets the target; judges it only on the server it is judged on ("stub" or "testbed")."""
    here = (judged_on == "stub") == settings.stub
    row.target = target if here else f"{target} (judged on the {judged_on})"
    if here and row.own_paired is not None:
        row.met = met(row)

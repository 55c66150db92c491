"""Interleaved timing and the rows the report is made of."""

import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

Variant = Callable[[], dict[str, float]]


def interleave(
    variants: dict[str, Variant], iterations: int, warmup: int = 2, burst: int = 1
) -> dict[str, dict[str, list[float]]]:
    """Runs every variant once per iteration, rotating the order, and collects its metrics.

    Each variant measures itself and returns {metric: value}; rotating the order keeps
    any "who goes first" effect (a warm cache line, a just-woken server) off one side.
    With `burst` > 1 a variant makes that many calls in a row per turn and only the
    calls after the first are kept: calls that follow each other closely on one
    keep-alive connection (where delayed ACKs bite), not calls after a pause.
    """
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    samples: dict[str, dict[str, list[float]]] = {name: defaultdict(list) for name in names}
    for iteration in range(iterations):
        shift = iteration % len(names)
        for name in names[shift:] + names[:shift]:
            for call in range(burst):
                measured = variants[name]()
                if burst > 1 and call == 0:
                    continue
                for metric, value in measured.items():
                    samples[name][metric].append(value)
    return samples


def timed(work: Callable[[], object]) -> dict[str, float]:
    start = time.perf_counter()
    work()
    return {"total": time.perf_counter() - start}


def median(values: list[float]) -> float:
    return statistics.median(values)


@dataclass
class Row:
    """One line of the report: a metric of a case on one server, direct vs plugin."""

    case: str
    server: str
    metric: str
    unit: str  # "s", "count", "bytes", "ratio"
    direct: float | None = None
    plugin: float | None = None
    runtime: float | None = None  # through `python -m main` over stdio
    target: str = ""
    met: bool | None = None  # None: no target, or not judged on this server
    note: str = ""
    samples: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.direct and self.plugin is not None:
            return self.plugin / self.direct
        return None

    @property
    def added(self) -> float | None:
        if self.direct is not None and self.plugin is not None:
            return self.plugin - self.direct
        return None

    @property
    def runtime_ratio(self) -> float | None:
        if self.direct and self.runtime is not None:
            return self.runtime / self.direct
        return None

    def as_json(self) -> dict:
        data = asdict(self)
        data.update(ratio=self.ratio, added=self.added, runtime_ratio=self.runtime_ratio)
        return data


def rows_from(
    samples: dict[str, dict[str, list[float]]], case: str, server: str, metric: str, unit: str = "s",
    label: str | None = None, **kwargs,
) -> Row:
    """A row of the medians of one metric; `label` names it in the table (default: the metric)."""

    def med(name: str) -> float | None:
        values = samples.get(name, {}).get(metric)
        return median(values) if values else None

    count = max((len(samples.get(n, {}).get(metric, [])) for n in samples), default=0)
    row = Row(
        case=case, server=server, metric=label or metric, unit=unit,
        direct=med("direct"), plugin=med("plugin"), runtime=med("runtime"), samples=count, **kwargs,
    )
    # Calls of one iteration run close together, so their differences cancel a server
    # whose speed drifts (a busy machine) better than a difference of medians does.
    direct, plugin = samples.get("direct", {}).get(metric), samples.get("plugin", {}).get(metric)
    if direct and plugin and len(direct) == len(plugin):
        row.extra["paired_added"] = median([p - d for p, d in zip(plugin, direct)])
    return row

"""Many Dify users at once: N streamed chats in flight, through the daemon and direct.

At each level every path runs for the same time with N workers, each starting its next
streamed chat as soon as the last one ended. Throughput is completed streams per second
(the calls still running at the deadline finish and count; the time is until the last
one ends); first-chunk percentiles are over every completed stream; an error is a stream
that failed or answered incompletely. Paths take turns (the order rotates per round), so
a machine whose load changes does not favour one.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from bench.daemon.paths import Direct, ThroughDaemon

LEVELS = (1, 8, 32, 64)


@dataclass
class LoadResult:
    path: str
    concurrency: int
    completed: int = 0
    errors: int = 0
    seconds: float = 0.0
    ttfc: list[float] = field(default_factory=list)
    first_error: str = ""

    @property
    def throughput(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0

    def percentile(self, share: float) -> float | None:
        if not self.ttfc:
            return None
        ordered = sorted(self.ttfc)
        return ordered[max(0, -(-int(share * 100) * len(ordered) // 100) - 1)]

    def add(self, other: "LoadResult") -> None:
        self.completed += other.completed
        self.errors += other.errors
        self.seconds += other.seconds
        self.ttfc += other.ttfc
        self.first_error = self.first_error or other.first_error


def streams_for(path: ThroughDaemon | Direct, concurrency: int, seconds: float) -> LoadResult:
    """`concurrency` workers making streamed chats back to back for `seconds`."""
    result = LoadResult(path.name, concurrency)
    lock = threading.Lock()
    start = time.perf_counter()
    deadline = start + seconds

    def worker() -> None:
        while time.perf_counter() < deadline:
            try:
                measured = path.chat(stream=True)
            except Exception as exc:  # noqa: BLE001 - every failure is counted, the first shown
                with lock:
                    result.errors += 1
                    result.first_error = result.first_error or f"{type(exc).__name__}: {exc}"[:300]
                continue
            with lock:
                result.completed += 1
                result.ttfc.append(measured["ttfc"])

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    result.seconds = time.perf_counter() - start
    return result


def load_levels(paths: dict[str, ThroughDaemon | Direct], levels: tuple[int, ...], seconds: float,
                rounds: int) -> list[LoadResult]:  # fmt: skip
    """Every path at every level, `rounds` turns of `seconds` each, summed."""
    results = []
    names = list(paths)
    for level in levels:
        combined = {name: LoadResult(name, level) for name in names}
        for turn in range(rounds):
            shift = (turn + level) % len(names)
            for name in names[shift:] + names[:shift]:
                combined[name].add(streams_for(paths[name], level, seconds))
        results += combined.values()
    return results

"""The daemon bench's tables, in Markdown (they go into bench/README.md as printed)."""

from bench.daemon.calls import CallRow, Stats
from bench.daemon.load import LoadResult

PATHS = ("plugin", "null", "official", "direct")
HEADINGS = {"plugin": "this plugin", "null": "null plugin", "official": "official plugin", "direct": "direct HTTP"}


def ms(seconds: float | None, signed: bool = False) -> str:
    if seconds is None:
        return "–"
    if abs(seconds) >= 10:
        return f"{seconds:{'+' if signed else ''}.1f} s"
    return f"{seconds * 1e3:{'+' if signed else ''}.1f} ms"


def _pair(stats: Stats | None) -> str:
    return "–" if stats is None else f"{ms(stats.p50)} / {ms(stats.p95)}"


def _verdict(row: CallRow) -> str:
    if not row.target:
        return ""
    return f"{row.target}: " + {True: "met", False: "**missed**", None: "not judged"}[row.met]


def calls_table(rows: list[CallRow]) -> str:
    present = [path for path in PATHS if any(path in row.stats for row in rows)]
    header = ["call", *[f"{HEADINGS[path]} p50 / p95" for path in present], "plugin / direct",
              "plugin's own cost (paired)", "(of medians)"]  # fmt: skip
    if "official" in present:
        header.append("official's own cost (paired)")
    header += ["CPU per call: plugin / null process, direct client", "plugin's own CPU", "target", "samples"]
    lines = [_line(header), _line(["---"] * len(header))]
    for row in rows:
        plugin, direct = row.stats.get("plugin"), row.stats.get("direct")
        ratio = f"{plugin.p50 / direct.p50:.3f}×" if plugin and direct else "–"
        cells = [f"{row.call}: {row.metric}" if row.metric != "total" else row.call,
                 *[_pair(row.stats.get(path)) for path in present], ratio,
                 ms(row.own_paired, signed=True), ms(row.own_of_medians, signed=True)]  # fmt: skip
        if "official" in present:
            cells.append(ms(row.official_own_paired, signed=True))
        cpu = " / ".join(ms(row.cpu.get(path)) for path in ("plugin", "null", "direct")) if row.cpu else ""
        cells += [cpu, ms(row.own_cpu, signed=True) if row.own_cpu is not None else "", _verdict(row), str(max((s.samples for s in row.stats.values()), default=0))]
        lines.append(_line(cells))
    return "\n".join(lines)


def load_table(results: list[LoadResult]) -> str:
    direct = {result.concurrency: result for result in results if result.path == "direct"}
    header = ["streams in flight", "path", "streams/s", "vs direct", "first chunk p50 / p99", "completed", "errors"]
    lines = [_line(header), _line(["---"] * len(header))]
    for result in results:
        baseline = direct.get(result.concurrency)
        versus = f"{result.throughput / baseline.throughput:.2f}×" if baseline and baseline.throughput else "–"
        errors = str(result.errors) + (f" ({result.first_error})" if result.first_error else "")
        lines.append(_line([
            str(result.concurrency), HEADINGS[result.path], f"{result.throughput:.1f}", versus,
            f"{ms(result.percentile(0.50))} / {ms(result.percentile(0.99))}", str(result.completed), errors,
        ]))  # fmt: skip
    return "\n".join(lines)


def rss_table(before: dict[str, int | None], after: dict[str, int | None]) -> str:
    lines = [_line(["plugin process", "RSS after start", "RSS after the run", "growth"]), _line(["---"] * 4)]
    for path in PATHS:
        if path not in before:
            continue
        start, end = before[path], after.get(path)
        growth = f"{(end - start) / 2**20:+.1f} MiB" if start and end else "–"
        lines.append(_line([HEADINGS[path], _mib(start), _mib(end), growth]))
    return "\n".join(lines)


def _mib(value: int | None) -> str:
    return "–" if value is None else f"{value / 2**20:.1f} MiB"


def _line(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |"

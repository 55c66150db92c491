"""The terminal table."""

from bench.measure import Row


def fmt(value: float | None, unit: str, signed: bool = False) -> str:
    if value is None:
        return "-"
    sign = "+" if signed and value >= 0 else ""
    if unit == "count":
        return f"{sign}{value:g}"
    if unit == "ratio":
        return f"{value:.3f}×"
    if unit == "B":
        return f"{sign}{value:,.0f} B"
    if unit == "bytes":
        return f"{sign}{value / 2**20:.1f} MiB"
    magnitude = abs(value)
    if magnitude >= 1:
        return f"{sign}{value:.2f} s"
    if magnitude >= 1e-3:
        return f"{sign}{value * 1e3:.2f} ms"
    return f"{sign}{value * 1e6:.1f} µs"


def ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}×"


def verdict(row: Row) -> str:
    if row.met is None:
        return ""
    return "met" if row.met else "MISSED"


def render_table(rows: list[Row]) -> str:
    header = ["case", "server", "metric", "direct", "plugin", "plugin/direct", "added", "paired",
              "runtime", "runtime/direct", "target", "", "note"]
    lines = []
    for row in rows:
        ratio_cell = ratio(row.ratio) if row.unit == "s" else "-"
        added_cell = fmt(row.added, row.unit, signed=True) if row.unit in ("s",) else "-"
        lines.append([
            row.case, row.server, row.metric,
            fmt(row.direct, row.unit), fmt(row.plugin, row.unit), ratio_cell, added_cell,
            fmt(row.extra.get("paired_added"), row.unit, signed=True) if row.unit == "s" else "-",
            fmt(row.runtime, row.unit), ratio(row.runtime_ratio) if row.unit == "s" else "-",
            row.target, verdict(row), row.note,
        ])
    widths = [max(len(str(cells[i])) for cells in [header, *lines]) for i in range(len(header))]
    out = []
    for number, cells in enumerate([header, *lines]):
        out.append("  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip())
        if number == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)

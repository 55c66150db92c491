"""`python -m bench --daemon`: what the plugin costs inside the real Dify plugin daemon.

One daemon (the daemon tier's services: PostgreSQL, Redis, `dify migrate`, the daemon, on
loopback) with the plugins installed side by side from packages the official CLI built:
this plugin, the null plugin (bench/null_plugin: fixed answers, no HTTP; the floor of the
daemon and the SDK), and optionally the official `langgenius/xinference` plugin from a
local folder (`--official DIR`). Against the real testbed (Xinference 4.1.0; a running one
with `--state`, else started for the run), or the local stub in `--quick` mode.
"""

import datetime
import json
import os
import sys
import tempfile
import traceback
from dataclasses import asdict
from pathlib import Path

from bench.cases import Server
from bench.daemon.calls import CASES, CallRow, Settings
from bench.daemon.load import LEVELS, LoadResult, load_levels
from bench.daemon.official import official_credentials, tiktoken_cache
from bench.daemon.paths import Direct, ThroughDaemon
from bench.daemon.stack import NULL_PLUGIN_ROOT, BenchDaemon, rss_bytes
from bench.daemon.tables import calls_table, load_table, rss_table
from bench.servers import StubProcess, Testbed, log
from bench.stdio_client import PLUGIN_ROOT

STUB_UIDS = {"chat": "chat", "embedding": "embedding", "rerank": "rerank"}
QUICK_LEVELS = (1, 8)


PARTS = [case.__name__ for case in CASES] + ["concurrency"]


def run(quick: bool, state: str | None, official: str | None, out: str | None, machine: dict,
        only: set[str] | None = None, stub_only: bool = False) -> int:  # fmt: skip
    """The whole daemon bench, or the `only` parts of it (names in PARTS); against the
    testbed, or the stub with `stub_only` (and in `quick` mode unless a testbed state is given)."""
    only = only or set(PARTS)
    load = [os.getloadavg()]
    stub = testbed = daemon = None
    failures: list[str] = []
    rows: list[CallRow] = []
    levels: list[LoadResult] = []
    rss_before: dict = {}
    rss_after: dict = {}
    server_name = ""
    try:
        if not stub_only:
            testbed = Testbed.open(state or os.environ.get("XINFERENCE_TESTBED_STATE"), start=not quick)
        if testbed:
            server = Server("testbed", testbed.state["url"], testbed.state["uids"], api_key=testbed.state.get("api_key"))
            server_name = f"testbed (Xinference {testbed.state.get('xinference_version', '?')})"
        else:
            stub = StubProcess()
            server = Server("stub", stub.url, STUB_UIDS, is_stub=True)
            server_name = "stub (bench/stub_server.py)"
        environment = {"PPROF_ENABLED": "true"}
        scratch = tempfile.TemporaryDirectory(prefix="bench-daemon-tiktoken-")
        if official:
            environment["TIKTOKEN_CACHE_DIR"] = tiktoken_cache(Path(scratch.name))
        daemon = BenchDaemon(environment)
        log("starting PostgreSQL, Redis and the daemon")
        daemon.start()
        roots = {"plugin": PLUGIN_ROOT, "null": NULL_PLUGIN_ROOT}
        if official:
            roots["official"] = Path(official).resolve()
        log(f"packaging and installing {', '.join(roots)}")
        daemon.install(roots)
        log(f"installed in {daemon.install_seconds:.0f} s")
        paths = _paths(daemon, server)
        _shape_null_like_plugin(paths)
        pids = daemon.plugin_pids()
        for name, pid in pids.items():
            paths[name].pid = pid
        rss_before = {name: rss_bytes(pid) for name, pid in pids.items()}

        load.append(os.getloadavg())
        settings = Settings(quick=quick, stub=server.is_stub, embedding_texts=100 if quick else 1000)
        for case in CASES:
            if case.__name__ not in only:
                continue
            log(f"{case.__name__}, interleaved: {', '.join(paths)}")
            try:
                rows += (done := case(settings, paths))
                log("\n" + calls_table(done))
            except Exception:
                failures.append(f"{case.__name__}: {traceback.format_exc()}")
                log(failures[-1])
        load.append(os.getloadavg())
        if "concurrency" in only:
            log("concurrent streams")
            levels = load_levels({name: paths[name] for name in ("plugin", "null", "direct")},
                                 QUICK_LEVELS if quick else LEVELS, seconds=1.0 if quick else 6.0,
                                 rounds=1 if quick else 2)  # fmt: skip
        load.append(os.getloadavg())
        rss_after = {name: rss_bytes(pid) for name, pid in pids.items()}
        if daemon.plugin_pids() != pids:
            failures.append(f"a plugin process was restarted during the run: {pids} → {daemon.plugin_pids()}")
    except (Exception, KeyboardInterrupt):
        failures.append(traceback.format_exc())
        log(failures[-1])
        if daemon is not None:
            log(f"daemon log: {daemon.log}")
    finally:
        for resource in (daemon, stub, testbed):
            if resource is not None:
                resource.close()

    if quick:
        for row in rows:
            row.met = None
    missed = [f"{row.call}: {row.metric}" for row in rows if row.met is False]
    missed += _judge_load(levels) if not quick and testbed else []
    report = _report(machine, server_name, load, rows, levels, rss_before, rss_after, quick)
    print(report)
    for line in missed:
        print(f"target missed: {line}")
    out_path = Path(out) if out else PLUGIN_ROOT / "bench" / "results" / (
        datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ") + "-daemon" + ("-quick" if quick else "") + ".json")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps({
        "machine": machine, "mode": "daemon-quick" if quick else "daemon", "server": server_name,
        "load_average": load, "calls": [asdict(row) for row in rows],
        "concurrency": [dict(asdict(result), throughput=result.throughput) for result in levels],
        "rss_before": rss_before, "rss_after": rss_after, "failures": failures, "missed": missed,
    }, indent=2, ensure_ascii=False) + "\n")  # fmt: skip
    print(f"\nresults: {out_path}")
    if failures:
        print(f"the daemon bench broke ({len(failures)} failure(s), see above)", file=sys.stderr)
        return 2
    return 1 if missed and not quick else 0


def _paths(daemon: BenchDaemon, server: Server) -> dict[str, ThroughDaemon | Direct]:
    def ours(role: str) -> dict:
        credentials = {"server_url": server.url, "model_uid": server.uids[role], "invoke_timeout": "600"}
        if server.api_key:
            credentials["api_key"] = server.api_key
        return credentials

    roles = ("chat", "embedding", "rerank")
    models = {role: server.uids[role] for role in roles}
    paths: dict[str, ThroughDaemon | Direct] = {}
    for name, plugin in daemon.plugins.items():
        if name == "official":
            credentials = {role: official_credentials(server, role) for role in roles}
        elif name == "null":
            credentials = {role: {} for role in roles}
        else:
            credentials = {role: ours(role) for role in roles}
        paths[name] = ThroughDaemon(name, daemon.client, plugin.plugin_id, plugin.provider, credentials, models)
    paths["direct"] = Direct(server)
    return paths


def _shape_null_like_plugin(paths: dict) -> None:
    """The null plugin answers with as many chunks and as long vectors as the plugin does here."""
    chunks = paths["plugin"].chat(stream=True)["chunks"]
    dimensions = paths["plugin"].embed([["one text", "another text"]])["dimensions"]
    for credentials in paths["null"].credentials.values():
        credentials.update(chunks=str(chunks), dimensions=str(dimensions))
    log(f"null plugin shaped like the plugin's answers: {chunks} chunks per stream, {dimensions} dimensions")


def _judge_load(levels: list[LoadResult]) -> list[str]:
    top = max((result.concurrency for result in levels), default=0)
    at_top = {result.path: result for result in levels if result.concurrency == top}
    plugin, direct = at_top.get("plugin"), at_top.get("direct")
    if plugin is None or direct is None:
        return []
    missed = []
    if plugin.errors:
        missed.append(f"{top} concurrent streams: {plugin.errors} errors through the plugin")
    if plugin.throughput < 0.9 * direct.throughput:
        missed.append(f"{top} concurrent streams: {plugin.throughput:.1f}/s through the plugin, "
                      f"< 90 % of direct's {direct.throughput:.1f}/s")  # fmt: skip
    return missed


def _report(machine: dict, server: str, load: list, rows: list[CallRow], levels: list[LoadResult],
            rss_before: dict, rss_after: dict, quick: bool) -> str:  # fmt: skip
    loads = " → ".join(f"{one:.2f}" for one, _, _ in load)
    lines = [
        f"daemon bench{' (--quick: too few iterations to judge; none is judged)' if quick else ''}: "
        f"{machine['date']}, {machine['cpu_model']}, {machine['usable_cores']} usable cores, "
        f"commit {machine['git_commit'][:10]}{' (dirty)' if machine['git_dirty'] else ''}, "
        f"dify_plugin {machine['dify_plugin']}, server: {server}",
        f"load average (1 min) at start → calls → concurrency → end: {loads}",
        "", calls_table(rows), "", load_table(levels), "", rss_table(rss_before, rss_after),
    ]  # fmt: skip
    return "\n".join(lines)


"""Benchmark: a call through the plugin should cost what a direct HTTP call costs.

    .venv/bin/python -m bench                 # stub server + the real testbed (scripts/testbed)
    .venv/bin/python -m bench --stub-only     # only the local zero-latency stub
    .venv/bin/python -m bench --quick         # CI smoke: few iterations, stub only unless a
                                              # testbed state is given; never judges numbers
    .venv/bin/python -m bench --state FILE    # use a running testbed (or XINFERENCE_TESTBED_STATE)
    .venv/bin/python -m bench --daemon        # through the real Dify plugin daemon, beside a null
                                              # plugin and direct HTTP (bench/daemon/run.py)
    .venv/bin/python -m bench --daemon --quick   # its CI smoke: the stub, a few calls each

Prints a table and writes JSON into bench/results/. Exit status: 0 when the bench ran
(in --quick mode whatever the numbers; otherwise 1 if a target was missed), 2 when the
bench itself broke.
"""

# dify_plugin applies gevent's monkey patching on import, as in the plugin runtime:
# import it first, so everything here (the direct client included) runs patched alike.
import dify_plugin  # noqa: F401  isort: skip

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

from bench import cases
from bench.daemon.run import PARTS as DAEMON_PARTS
from bench.daemon.run import run as run_daemon_bench
from bench.embedding_dify import embedding_dify_style
from bench.measure import Row
from bench.report import render_table
from bench.rerank_overhead import rerank_100
from bench.servers import StubProcess, Testbed, log
from bench.stdio_client import PLUGIN_ROOT, PluginProcess

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few iterations; exit 0 whatever the numbers")
    parser.add_argument("--stub-only", "--no-testbed", dest="stub_only", action="store_true",
                        help="skip the real Xinference testbed")
    parser.add_argument("--state", help="state JSON of a running testbed (default: $XINFERENCE_TESTBED_STATE)")
    parser.add_argument("--no-stub", action="store_true", help="skip the stub server (the testbed only)")
    parser.add_argument("--no-runtime", action="store_true", help="skip the `python -m main` over stdio variant")
    parser.add_argument("--only", help="comma-separated case names: " + ", ".join(CASES)
                        + "; with --daemon: " + ", ".join(DAEMON_PARTS))
    parser.add_argument("--out", help="JSON output file (default: bench/results/<UTC time>[-quick].json)")
    parser.add_argument("--before", metavar="DIR",
                        help="another checkout of the plugin to run beside this one in embedding_dify "
                             "(e.g. git archive <commit> | tar -x -C DIR)")
    parser.add_argument("--daemon", action="store_true",
                        help="through the real Dify plugin daemon: this plugin, the null plugin and direct HTTP "
                             "(see bench/daemon/run.py); with --quick against the stub unless --state is given")
    parser.add_argument("--official", metavar="DIR",
                        help="with --daemon: also the official langgenius/xinference plugin from this folder")
    args = parser.parse_args(argv)
    if args.official and not args.daemon:
        parser.error("--official needs --daemon")
    if args.daemon:
        parts = set(args.only.split(",")) if args.only else None
        if parts and parts - set(DAEMON_PARTS):
            parser.error(f"unknown part(s) of --daemon: {', '.join(sorted(parts - set(DAEMON_PARTS)))}")
        return run_daemon_bench(quick=args.quick, state=args.state, official=args.official, out=args.out,
                                machine=machine(), only=parts, stub_only=args.stub_only)  # fmt: skip

    only = set(args.only.split(",")) if args.only else set(CASES)
    unknown = only - set(CASES)
    if unknown:
        parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")

    rows: list[Row] = []
    failures: list[str] = []
    servers: list[cases.Server] = []
    stub = stub_xtcp = testbed = runtime = None
    try:
        stub = StubProcess()
        stub_xtcp = StubProcess("--like-xinference-tcp")
        runtime = None if args.no_runtime else PluginProcess()
        if runtime:
            runtime.wait_for_heartbeat()
        settings = cases.Settings(quick=args.quick, runtime=runtime, before_root=args.before)
        servers = [] if args.no_stub else [
            cases.Server("stub", stub.url, STUB_UIDS, is_stub=True),
            cases.Server("stub-xtcp", stub_xtcp.url, STUB_UIDS, is_stub=True),
        ]
        try:
            testbed = Testbed.open(args.state or os.environ.get("XINFERENCE_TESTBED_STATE"),
                                   start=not (args.stub_only or args.quick))
        except Exception:
            # Still measure against the stub; the run counts as broken (exit 2).
            failures.append(f"testbed: {traceback.format_exc()}")
            log(failures[-1])
        if testbed and not args.stub_only:
            servers.append(cases.Server("testbed", testbed.state["url"], testbed.state["uids"],
                                        api_key=testbed.state.get("api_key")))
        for server in servers:
            for name, (case, where) in CASES.items():
                if name not in only or server.name not in where:
                    continue
                log(f"{server.name}: {name} ...")
                started = time.monotonic()
                try:
                    new_rows = case(settings, server)
                except Exception:
                    failures.append(f"{server.name}/{name}: {traceback.format_exc()}")
                    log(failures[-1])
                    continue
                rows.extend(new_rows)
                log(f"{server.name}: {name} done in {time.monotonic() - started:.1f} s")
    finally:
        if runtime:
            runtime.close()
        for process in (stub, stub_xtcp):
            if process:
                process.close()
        if testbed:
            testbed.close()

    if args.quick:
        # A smoke run: a few iterations say nothing about the targets, so none is judged.
        for row in rows:
            row.met = None
    print(render_table(rows))
    if args.quick:
        print("(--quick: too few iterations to judge the targets; none is judged)")
    out = Path(args.out) if args.out else RESULTS / (
        datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ") + ("-quick" if args.quick else "") + ".json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(
        {
            "machine": machine(),
            "mode": "quick" if args.quick else "full",
            "servers": [s.name for s in servers],
            "rows": [row.as_json() for row in rows],
            "failures": failures,
        },
        indent=2, ensure_ascii=False,
    ) + "\n")
    print(f"\nresults: {out}")
    if failures:
        print(f"{len(failures)} case(s) broke; see above", file=sys.stderr)
        return 2
    missed = [r for r in rows if r.met is False]
    if missed and not args.quick:
        return 1
    return 0


# name: (function, the servers it runs on)
CASES = {
    "chat_blocking": (cases.chat_blocking, ("stub", "testbed")),
    "chat_back_to_back": (lambda s, srv: cases.chat_blocking(s, srv, back_to_back=True), ("stub-xtcp", "testbed")),
    "chat_stream": (cases.chat_stream, ("stub", "testbed")),
    "chat_stream_back_to_back": (lambda s, srv: cases.chat_stream(s, srv, back_to_back=True), ("stub-xtcp", "testbed")),
    "chat_stream_paced": (lambda s, srv: cases.chat_stream(s, srv, paced=True), ("stub",)),
    "embedding": (cases.embedding, ("stub", "testbed")),
    "embedding_dify": (embedding_dify_style, ("stub", "testbed")),
    "rerank": (cases.rerank, ("stub", "testbed")),
    "rerank_100": (rerank_100, ("stub", "testbed")),
    "num_tokens": (cases.num_tokens, ("stub",)),
    "requests_per_invoke": (cases.requests_per_invoke, ("stub",)),
    "cold_start": (cases.cold_start_and_memory, ("stub",)),
    "transport": (cases.transport, ("testbed",)),
}
STUB_UIDS = {"chat": "chat", "generate": "generate", "embedding": "embedding", "rerank": "rerank"}


def machine() -> dict:
    cpu_models = [line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                  if line.startswith("model name")]
    commit = _git("rev-parse", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    import importlib.metadata as metadata

    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu_model": cpu_models[0] if cpu_models else platform.processor(),
        "cores": len(cpu_models) or os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "dify_plugin": metadata.version("dify_plugin"),
        "requests": metadata.version("requests"),
        "git_commit": commit,
        "git_dirty": dirty,
    }


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=PLUGIN_ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception:
        traceback.print_exc()
        sys.exit(2)

"""The servers the bench calls: the local stub (bench/stub_server.py) in its own process,
and the real testbed (scripts/testbed), named by a state file or started for the run."""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.stdio_client import PLUGIN_ROOT


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class StubProcess:
    def __init__(self, *options: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.stub_server", "--port", "0", *options],
            cwd=PLUGIN_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the stub server did not start")
        self.url = json.loads(line)["url"]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()


class Testbed:
    """A testbed named by a state file, or one this run starts with `scripts/testbed`."""

    def __init__(self, state: dict, stop_with: Path | None) -> None:
        self.state = state
        self._stop_with = stop_with

    @classmethod
    def open(cls, state_file: str | None, start: bool) -> "Testbed | None":
        if state_file:
            return cls(json.loads(Path(state_file).read_text()), None)
        if not start:
            return None
        script = PLUGIN_ROOT / "scripts" / "testbed"
        if not script.exists():
            log("no scripts/testbed yet: running against the stub only")
            return None
        state_path = Path(tempfile.mkdtemp(prefix="bench-testbed-")) / "state.json"
        log("starting the testbed (scripts/testbed start); this takes a few minutes the first time")
        result = subprocess.run([sys.executable, str(script), "start", "--state", str(state_path)], cwd=PLUGIN_ROOT)
        if result.returncode != 0 or not state_path.exists():
            raise RuntimeError(f"scripts/testbed start failed (exit {result.returncode})")
        return cls(json.loads(state_path.read_text()), state_path)

    def close(self) -> None:
        if self._stop_with:
            subprocess.run([sys.executable, str(PLUGIN_ROOT / "scripts" / "testbed"), "stop", "--state",
                            str(self._stop_with)], cwd=PLUGIN_ROOT, check=False)

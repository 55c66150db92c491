"""`python -m main` started by a person in a terminal says which mode it is in, on stderr only.

The daemon starts the plugin with a pipe on stdin and reads its protocol from stdout, so
the hint must never appear there, and never when stdin is not a terminal.
"""

import json
import os
import pty
import subprocess
import threading
import time

import pytest

from tests.runtime.conftest import plugin_under_test

STARTUP_TIMEOUT = 60.0


class StartedPlugin:
    """`python -m main` with the given stdin, its stdout and stderr collected line by line."""

    def __init__(self, stdin) -> None:
        plugin = plugin_under_test()
        environment = {**os.environ, "INSTALL_METHOD": "local", "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [plugin.python, "-m", "main"], cwd=plugin.root, env=environment,
            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.heartbeat = threading.Event()
        threading.Thread(target=self._collect, args=(self.process.stdout, self.stdout, True), daemon=True).start()
        threading.Thread(target=self._collect, args=(self.process.stderr, self.stderr, False), daemon=True).start()

    def _collect(self, stream, lines: list[str], watch_heartbeat: bool) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))
            if watch_heartbeat and '"heartbeat"' in line:
                self.heartbeat.set()

    def running_until_first_heartbeat(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self.heartbeat.wait(0.1):
            assert self.process.poll() is None, f"the plugin exited: {self.stderr}"
            assert time.monotonic() < deadline, "no heartbeat from the plugin"

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture
def terminal():
    controller, terminal_side = pty.openpty()
    yield terminal_side
    os.close(controller)
    os.close(terminal_side)


def protocol_lines(stdout: list[str]) -> list[str]:
    return [line for line in stdout if line.strip()]


def test_in_a_terminal_the_plugin_says_it_waits_for_the_daemon_and_how_to_debug_remotely(terminal):
    plugin = StartedPlugin(stdin=terminal)
    try:
        plugin.running_until_first_heartbeat()
    finally:
        plugin.stop()

    hints = [line for line in plugin.stderr if line.startswith("main: ")]
    assert len(hints) == 1, plugin.stderr
    assert "local mode" in hints[0] and ".env.example" in hints[0] and "REMOTE_INSTALL_KEY" in hints[0]
    # stdout stays the daemon's protocol: JSON lines only, no hint among them.
    for line in protocol_lines(plugin.stdout):
        json.loads(line)


def test_started_by_the_daemon_with_a_pipe_the_plugin_prints_no_hint():
    plugin = StartedPlugin(stdin=subprocess.PIPE)
    try:
        plugin.running_until_first_heartbeat()
    finally:
        plugin.stop()

    assert not [line for line in plugin.stderr + plugin.stdout if line.startswith("main: ")]

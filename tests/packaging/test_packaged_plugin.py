"""The built .difypkg, unpacked into an empty folder with its own venv, runs as Dify runs it.

The runtime tests (tests/runtime) are run again in a child pytest, pointed at the
unpacked plugin and its venv; the serverless start is the official plugin CI's check.
"""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.runtime.harness import REPO_ROOT, RunningPlugin, unused_port

SERVERLESS_START_TIMEOUT = 60.0


def run_runtime_tests(plugin, *pytest_args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """tests/runtime in a child pytest, against `plugin` (root and python) instead of the repository."""
    child_env = {
        **os.environ,
        "XINFERENCE_PLUGIN_ROOT": str(plugin.root),
        "XINFERENCE_PLUGIN_PYTHON": plugin.python,
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "tests/runtime", *pytest_args],
        cwd=REPO_ROOT,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=1800,
    )


def assert_passed(completed: subprocess.CompletedProcess, plugin) -> None:
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-6000:]
    assert f"plugin under test: {plugin.root}" in output  # it really ran the unpacked copy
    assert " passed" in output and " failed" not in output


def test_the_unpacked_package_passes_the_runtime_tests(unpacked_plugin):
    completed = run_runtime_tests(unpacked_plugin)
    assert_passed(completed, unpacked_plugin)


def test_the_unpacked_package_starts_in_serverless_mode(unpacked_plugin):
    """The official plugin CI's start check: INSTALL_METHOD=serverless brings up the HTTP server."""
    port = unused_port()
    with RunningPlugin(
        unpacked_plugin.root,
        unpacked_plugin.python,
        "serverless",
        {"SERVERLESS_HOST": "127.0.0.1", "SERVERLESS_PORT": str(port)},
    ) as plugin:
        deadline = time.monotonic() + SERVERLESS_START_TIMEOUT
        while (answer := _health(port)) is None:
            if plugin.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no HTTP server on port {port}:\n{plugin.transcript()[-4000:]}")
            time.sleep(0.2)
    assert answer == (200, "OK")


def _health(port: int) -> tuple[int, str] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return response.status, response.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


@pytest.mark.integration
def test_the_unpacked_package_passes_the_real_server_runtime_tests(unpacked_plugin, testbed, tmp_path):
    state = tmp_path / "testbed-state.json"
    state.write_text(json.dumps(testbed))
    completed = run_runtime_tests(
        unpacked_plugin, "-m", "integration", env={"XINFERENCE_TESTBED_STATE": str(state)}
    )
    assert_passed(completed, unpacked_plugin)

# The SDK monkey-patches the standard library with gevent when it is imported, as it is
# first thing in `python -m main`; tests import it first too, so they run the same way.
import dify_plugin  # noqa: F401  isort: skip

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from models.common import memory

# The plugin runtime imports `models.*` and `provider.*` from the plugin root (its cwd).
PLUGIN_ROOT = Path(__file__).resolve().parent.parent
if str(PLUGIN_ROOT) not in sys.path:
    sys.path.insert(0, str(PLUGIN_ROOT))


@pytest.fixture(autouse=True)
def _each_test_starts_with_a_fresh_process():
    """Tests run in random order (pytest.ini): none may see what another left in the plugin's
    process-wide memories."""
    memory.forget_everything()
    yield
    memory.forget_everything()


def pytest_terminal_summary(terminalreporter, config):
    seed = getattr(config.option, "randomly_seed", None)
    if config.pluginmanager.hasplugin("randomly") and isinstance(seed, int):
        terminalreporter.write_line(f"random test order: replay it with --randomly-seed={seed}")


def _testbed(tmp_path_factory, state_variable: str, *start_options: str):
    named = os.environ.get(state_variable)
    if named:
        yield json.loads(Path(named).read_text())
        return
    state_file = tmp_path_factory.mktemp("testbed") / "state.json"
    testbed_script = str(PLUGIN_ROOT / "scripts" / "testbed")
    subprocess.run(
        [sys.executable, testbed_script, "start", "--state", str(state_file), *start_options], check=True
    )
    try:
        yield json.loads(state_file.read_text())
    finally:
        subprocess.run([sys.executable, testbed_script, "stop", "--state", str(state_file)], check=False)


@pytest.fixture(scope="session")
def testbed(tmp_path_factory):
    """The real Xinference server of `scripts/testbed`, as its state JSON.

    Uses the one named by XINFERENCE_TESTBED_STATE (`scripts/testbed run -- ...` sets it);
    otherwise starts one for this session and stops it afterwards.
    """
    yield from _testbed(tmp_path_factory, "XINFERENCE_TESTBED_STATE")


@pytest.fixture(scope="session")
def testbed_with_auth(tmp_path_factory):
    """A second real server with authentication on and a real API key in its state."""
    yield from _testbed(tmp_path_factory, "XINFERENCE_TESTBED_AUTH_STATE", "--auth")

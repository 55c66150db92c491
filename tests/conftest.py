import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# The plugin runtime imports `models.*` and `provider.*` from the plugin root (its cwd).
PLUGIN_ROOT = Path(__file__).resolve().parent.parent
if str(PLUGIN_ROOT) not in sys.path:
    sys.path.insert(0, str(PLUGIN_ROOT))


@pytest.fixture(scope="session")
def testbed(tmp_path_factory) -> dict:
    """The real Xinference server of `scripts/testbed`, as its state JSON.

    Uses the one named by XINFERENCE_TESTBED_STATE (`scripts/testbed run -- ...` sets it);
    otherwise starts one for this session and stops it afterwards.
    """
    named = os.environ.get("XINFERENCE_TESTBED_STATE")
    if named:
        yield json.loads(Path(named).read_text())
        return
    state_file = tmp_path_factory.mktemp("testbed") / "state.json"
    testbed_script = PLUGIN_ROOT / "scripts" / "testbed"
    subprocess.run([sys.executable, str(testbed_script), "start", "--state", str(state_file)], check=True)
    try:
        yield json.loads(state_file.read_text())
    finally:
        subprocess.run([sys.executable, str(testbed_script), "stop", "--state", str(state_file)], check=False)

"""Fixtures for driving the plugin as Dify drives it.

The plugin under test is the repository by default. The packaging tests point the same
tests at an unpacked .difypkg with its own venv through two environment variables:
  XINFERENCE_PLUGIN_ROOT    the plugin folder (manifest.yaml, main.py, ...)
  XINFERENCE_PLUGIN_PYTHON  the interpreter of that plugin's venv
"""

import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.runtime.harness import REPO_ROOT, PluginProcess
from tests.runtime.stub_xinference import CHAT_UID, StubXinference


@dataclass(frozen=True)
class PluginUnderTest:
    root: Path
    python: str

    @property
    def supported_model_types(self) -> list[str]:
        """What provider/xinference.yaml declares, read the way the daemon reads it."""
        provider = yaml.safe_load((self.root / "provider" / "xinference.yaml").read_text())
        return list(provider.get("supported_model_types") or [])


def plugin_under_test() -> PluginUnderTest:
    return PluginUnderTest(
        root=Path(os.environ.get("XINFERENCE_PLUGIN_ROOT") or REPO_ROOT).resolve(),
        python=os.environ.get("XINFERENCE_PLUGIN_PYTHON") or sys.executable,
    )


# A key in Xinference's own format, new for every run, so finding it in output means a leak.
STUB_API_KEY = "xf-" + secrets.token_hex(24)


@pytest.fixture(scope="session")
def target() -> PluginUnderTest:
    return plugin_under_test()


@pytest.fixture(scope="session")
def stub():
    server = StubXinference(api_key=STUB_API_KEY)
    yield server
    server.close()


@pytest.fixture(scope="session")
def plugin(target):
    with PluginProcess(target.root, target.python) as process:
        yield process


@pytest.fixture
def credentials(stub) -> dict:
    """The credential form as Dify sends it: every value a string."""
    return {
        "server_url": stub.url,
        "model_uid": CHAT_UID,
        "api_key": STUB_API_KEY,
        "invoke_timeout": "10",
        "max_retries": "0",
    }


def pytest_report_header(config):
    under_test = plugin_under_test()
    return f"plugin under test: {under_test.root} (python: {under_test.python})"

"""Builds the .difypkg once per session and installs it the way Dify does.

`unpacked_plugin` is the package unzipped into an empty folder with its own `.venv`,
created by the same Python 3.12 as the project's venv from the package's own
requirements.txt (see `install_package` in the harness).
"""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.runtime.conftest import PluginUnderTest
from tests.runtime.harness import REPO_ROOT, install_package, unpack_package

PACKAGE_SCRIPT = REPO_ROOT / "scripts" / "package"
TOOLS_SCRIPT = REPO_ROOT / "scripts" / "tools"


def dify_cli() -> str:
    """The official CLI; without it the packaging tests fail (scripts/setup builds it)."""
    found = subprocess.run([str(TOOLS_SCRIPT), "path", "dify"], capture_output=True, text=True)
    if found.returncode != 0:
        pytest.fail(f"the packaging tests need the official `dify` CLI: {found.stderr.strip()}", pytrace=False)
    return found.stdout.strip()


def run_package(root: Path, output: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(PACKAGE_SCRIPT), "--root", str(root), *extra]
    if output is not None:
        command += ["--output", str(output)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def violation_lines(completed: subprocess.CompletedProcess) -> list[str]:
    return [line.removeprefix("violation: ") for line in completed.stderr.splitlines() if line.startswith("violation: ")]


@pytest.fixture(scope="session")
def built_package(tmp_path_factory) -> Path:
    dify_cli()
    output = tmp_path_factory.mktemp("dist") / "xinference.difypkg"
    completed = run_package(REPO_ROOT, output)
    assert completed.returncode == 0, f"scripts/package failed:\n{completed.stderr}"
    return output


@pytest.fixture(scope="session")
def package_contents(built_package, tmp_path_factory) -> Path:
    """The built package unzipped: exactly what Dify gets. Treat as read-only."""
    return unpack_package(built_package, tmp_path_factory.mktemp("contents") / "plugin")


@pytest.fixture(scope="session")
def unpacked_plugin(built_package, tmp_path_factory) -> PluginUnderTest:
    root = tmp_path_factory.mktemp("installed") / "plugin"
    python = install_package(built_package, root)
    version = subprocess.run([str(python), "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True)
    assert version.stdout.strip() == "(3, 12)", f"the plugin venv runs {version.stdout.strip()}, Dify runs 3.12"
    return PluginUnderTest(root=root, python=str(python))

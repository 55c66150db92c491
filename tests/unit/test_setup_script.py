"""`scripts/setup` says which interpreter it tried and why it turned it down.

Run on a copy of the script with a PATH that holds only what the script needs, so no
Python 3.12 of the machine can be found and nothing is installed.
"""

import os
import shutil
import subprocess

from tests.runtime.harness import REPO_ROOT


def run_setup(tmp_path, python: str) -> subprocess.CompletedProcess:
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO_ROOT / "scripts" / "setup", tmp_path / "scripts" / "setup")
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("bash", "dirname"):
        os.symlink(shutil.which(tool), tools / tool)
    return subprocess.run(
        [str(tmp_path / "scripts" / "setup")], env={"PATH": str(tools), "PYTHON": python},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def fake_python(tmp_path, version: str):
    """An executable that answers the version question the way that Python would."""
    path = tmp_path / f"python{version}"
    path.write_text(f"#!{shutil.which('bash')}\necho {version}\n")
    path.chmod(0o755)
    return path


def test_a_python_of_another_version_is_named_with_its_version(tmp_path):
    python = fake_python(tmp_path, "3.11")

    completed = run_setup(tmp_path, str(python))

    assert completed.returncode == 1
    assert f"setup: PYTHON={python} is Python 3.11, not 3.12" in completed.stderr
    assert f"tried PYTHON={python} (is Python 3.11, not 3.12)" in completed.stderr
    assert not (tmp_path / ".venv").exists()


def test_a_python_that_does_not_exist_is_named_as_not_found(tmp_path):
    completed = run_setup(tmp_path, "/nowhere/python3.12")

    assert completed.returncode == 1
    assert "setup: PYTHON=/nowhere/python3.12 was not found" in completed.stderr

"""`scripts/tools`: reuses the official binaries it finds, builds them with `go install`
otherwise, and says exactly what to do when the Go module proxy refuses the module.

Each test runs a copy of the script in an empty project folder, with a fake `go` first on
a PATH that holds no `dify`, so nothing here builds or downloads anything.
"""

import os
import shutil
import subprocess
import sys

import pytest

from tests.runtime.harness import REPO_ROOT

PROXY_REFUSAL = """go: github.com/langgenius/dify-plugin-daemon/cmd/commandline@v0.0.0-20260807055045-1310a18b2f6b: reading https://proxy.golang.org/github.com/langgenius/dify-plugin-daemon/cmd/commandline/@v/v0.0.0-20260807055045-1310a18b2f6b.info: 403 Forbidden
\tserver response: This module version is not available."""


@pytest.fixture
def project(tmp_path):
    (tmp_path / "scripts").mkdir()
    for name in ("tools", "package", "difypkg.py"):
        shutil.copy2(REPO_ROOT / "scripts" / name, tmp_path / "scripts" / name)
    (tmp_path / "bin").mkdir()
    return tmp_path


def fake_go(project, script: str) -> None:
    go = project / "bin" / "go"
    go.write_text("#!/bin/sh\necho \"$@\" >> \"$(dirname \"$0\")/go-calls\"\n" + script)
    go.chmod(0o755)


def run(project, *args: str, command: str = "scripts/tools") -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{project / 'bin'}:/usr/bin:/bin"}
    return subprocess.run(
        [str(project / command), *args], cwd=project, env=env, capture_output=True, text=True, timeout=60
    )


def test_a_refusing_proxy_is_named_with_the_way_out(project):
    fake_go(project, f"cat >&2 <<'EOF'\n{PROXY_REFUSAL}\nEOF\nexit 1\n")

    completed = run(project)

    assert completed.returncode == 1
    assert "tools: the Go module proxy refuses github.com/langgenius/dify-plugin-daemon@v0.0.0-20260807055045-1310a18b2f6b" in completed.stderr
    assert "403 Forbidden" in completed.stderr
    assert "put an official release binary on PATH as 'dify'" in completed.stderr
    assert "CGO_ENABLED=0 go build -o" in completed.stderr
    assert not (project / ".tools" / "dify").exists()


def test_go_install_is_pinned_static_and_lands_in_dot_tools(project):
    # A fake `go install` that "builds" the binary named after the package, as Go does.
    fake_go(project, 'mkdir -p "$GOBIN"; pkg="${4%@*}"; printf "#!/bin/sh\\n" > "$GOBIN/${pkg##*/}"; '
                     'chmod +x "$GOBIN/${pkg##*/}"; [ "$CGO_ENABLED" = 0 ] || exit 9\n')  # fmt: skip

    completed = run(project)

    assert completed.returncode == 0, completed.stderr
    calls = (project / "bin" / "go-calls").read_text().splitlines()
    assert [call.split()[-1] for call in calls] == [
        "github.com/langgenius/dify-plugin-daemon/cmd/commandline@v0.0.0-20260807055045-1310a18b2f6b",
        "github.com/langgenius/dify-plugin-daemon/cmd/server@v0.0.0-20260807055045-1310a18b2f6b",
    ]
    assert (project / ".tools" / "dify").is_file() and (project / ".tools" / "dify-plugin-daemon").is_file()


def test_binaries_already_present_are_reused_without_go(project):
    fake_go(project, "exit 1\n")
    (project / ".tools").mkdir()
    for name in ("dify", "dify-plugin-daemon"):
        (project / ".tools" / name).write_text("#!/bin/sh\n")
        (project / ".tools" / name).chmod(0o755)

    completed = run(project)

    assert completed.returncode == 0, completed.stderr
    assert f"tools: dify: {project / '.tools' / 'dify'}" in completed.stdout
    assert not (project / "bin" / "go-calls").exists()


def test_package_without_the_cli_says_how_to_get_it(project):
    completed = subprocess.run(
        [sys.executable, str(project / "scripts" / "package"), "--root", str(REPO_ROOT), "--check"],
        env={**os.environ, "PATH": f"{project / 'bin'}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert completed.returncode == 1
    assert "the official `dify` CLI is not in .tools/ or on PATH. Run scripts/tools" in completed.stderr

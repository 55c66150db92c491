"""`scripts/tools`: where the official CLI and daemon come from, in order — the tools cache,
`go install` of the pin, the source named by DIFY_PLUGIN_DAEMON_SOURCE, the archive beside
the clone in ../shared — and that a source other than the pinned one is refused unbuilt.

Each test runs a copy of the script in an empty project folder, with a fake `go` first on a
PATH that holds no `dify`, and a tools cache of its own, so nothing here builds or downloads
anything. The copy's pins are set to the fake source's digests, as the real ones are set
to the real source's.
"""

import gzip
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.runtime.harness import REPO_ROOT

RELEASE = "0.6.10"
PSEUDO_VERSION = "v0.0.0-20260807055045-1310a18b2f6b"
PROXY_REFUSAL = f"""go: github.com/langgenius/dify-plugin-daemon/cmd/commandline@{PSEUDO_VERSION}: reading https://proxy.golang.org/github.com/langgenius/dify-plugin-daemon/cmd/commandline/@v/{PSEUDO_VERSION}.info: 403 Forbidden
\tserver response: This module version is not available."""
SOURCE_FILES = {
    "go.mod": "module github.com/langgenius/dify-plugin-daemon\n\ngo 1.23\n",
    "cmd/commandline/main.go": "package main\n",
    "cmd/server/main.go": "package main\n",
    ".github/workflows/build.yml": "name: build\n",
}
# A fake `go`: `go install` as the test asks; `go build -o OUT ./cmd/x` writes OUT.
FAKE_GO = """#!/bin/sh
echo "$PWD $*" >> "$(dirname "$0")/go-calls"
case "$1" in
  build) while [ "$#" -gt 0 ]; do [ "$1" = -o ] && out="$2"; shift; done
         [ "$CGO_ENABLED" = 0 ] || exit 9; printf '#!/bin/sh\\n' > "$out"; chmod +x "$out" ;;
  install) %s ;;
esac
"""
REFUSE = f"cat >&2 <<'EOF'\n{PROXY_REFUSAL}\nEOF\nexit 1"
# `go install` of pkg@version into $GOBIN, named after the package as Go names it.
INSTALL = ('mkdir -p "$GOBIN"; for a; do pkg="$a"; done; pkg="${pkg%@*}"; '
           'printf "#!/bin/sh\\n" > "$GOBIN/${pkg##*/}"; chmod +x "$GOBIN/${pkg##*/}"')  # fmt: skip


def tree_digest(folder: Path) -> str:
    """sha256 over the sorted "sha256  ./path" lines of every file: what the pin holds."""
    paths = sorted(
        (path for path in folder.rglob("*") if path.is_file() and ".git" not in path.relative_to(folder).parts),
        key=lambda path: ("./" + path.relative_to(folder).as_posix()).encode(),
    )
    lines = "".join(
        f"{hashlib.sha256(path.read_bytes()).hexdigest()}  ./{path.relative_to(folder).as_posix()}\n" for path in paths
    )
    return hashlib.sha256(lines.encode()).hexdigest()


def write_source(folder: Path, files: dict[str, str] = SOURCE_FILES) -> Path:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def write_archive(path: Path, files: dict[str, str] = SOURCE_FILES) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # gzip's header holds a file name and a time: leave them out, so the same files make the same archive.
    with (
        path.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w") as archive,
    ):
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"dify-plugin-daemon-{RELEASE}/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root / "project"
        self.bin = root / "bin"
        self.cache = root / "tools-cache"
        self.shared_archive = root / "shared" / "third_party" / f"dify-plugin-daemon-{RELEASE}-src.tar.gz"
        (self.root / "scripts").mkdir(parents=True)
        self.bin.mkdir()
        self.good_source = write_source(root / "good-source")
        self.good_archive = write_archive(root / "good.tar.gz")
        script = (REPO_ROOT / "scripts" / "tools").read_text()
        script, pinned = re.subn(
            r"^SOURCE_ARCHIVE_SHA256=\w+$", f"SOURCE_ARCHIVE_SHA256={sha256_of(self.good_archive)}", script, flags=re.M
        )
        script, pinned_tree = re.subn(
            r"^SOURCE_TREE_DIGEST=\w+$", f"SOURCE_TREE_DIGEST={tree_digest(self.good_source)}", script, flags=re.M
        )
        assert pinned == pinned_tree == 1, "scripts/tools no longer pins the source in the lines this test sets"
        (self.root / "scripts" / "tools").write_text(script)
        (self.root / "scripts" / "tools").chmod(0o755)

    def fake_go(self, install: str) -> None:
        (self.bin / "go").write_text(FAKE_GO % install)
        (self.bin / "go").chmod(0o755)

    def go_calls(self) -> list[str]:
        calls = self.bin / "go-calls"
        return calls.read_text().splitlines() if calls.exists() else []

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        environment = {
            **{key: value for key, value in os.environ.items() if key != "DIFY_PLUGIN_DAEMON_SOURCE"},
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "DIFY_PLUGIN_TOOLS_CACHE": str(self.cache),
            **env,
        }
        return subprocess.run(
            [str(self.root / "scripts" / "tools"), *args],
            cwd=self.root, env=environment, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    def built(self) -> list[str]:
        folder = self.cache / RELEASE
        return sorted(path.name for path in folder.iterdir() if path.is_file() and os.access(path, os.X_OK)) if folder.exists() else []


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def project(tmp_path) -> Project:
    return Project(tmp_path)


def test_tools_already_built_for_the_pin_are_reused_without_go(project):
    project.fake_go("exit 1")
    (project.cache / RELEASE).mkdir(parents=True)
    for name in ("dify", "dify-plugin-daemon"):
        (project.cache / RELEASE / name).write_text("#!/bin/sh\n")
        (project.cache / RELEASE / name).chmod(0o755)

    completed = project.run()

    assert completed.returncode == 0, completed.stderr
    assert f"tools: dify: {project.cache / RELEASE / 'dify'}" in completed.stdout
    assert project.go_calls() == []


def test_go_install_of_the_pin_comes_first_and_fills_the_cache(project):
    project.fake_go(INSTALL)
    write_archive(project.shared_archive)

    completed = project.run()

    assert completed.returncode == 0, completed.stderr
    assert [call.split()[-1] for call in project.go_calls()] == [
        f"github.com/langgenius/dify-plugin-daemon/cmd/commandline@{PSEUDO_VERSION}",
        f"github.com/langgenius/dify-plugin-daemon/cmd/server@{PSEUDO_VERSION}",
    ]
    assert project.built() == ["dify", "dify-plugin-daemon"]
    assert project.run("path", "dify").stdout.strip() == str(project.cache / RELEASE / "dify")


def test_a_refusing_proxy_falls_back_to_the_named_source_folder_before_the_shared_archive(project):
    project.fake_go(REFUSE)
    write_archive(project.shared_archive)

    completed = project.run(DIFY_PLUGIN_DAEMON_SOURCE=str(project.good_source))

    assert completed.returncode == 0, completed.stderr
    assert "tools: the Go module proxy refuses github.com/langgenius/dify-plugin-daemon@" in completed.stderr
    builds = [call for call in project.go_calls() if " build " in call]
    assert [call.split()[0] for call in builds] == [str(project.good_source)] * 2
    assert [call.split()[-1] for call in builds] == ["./cmd/commandline", "./cmd/server"]
    assert "-X main.VersionX=0.6.10" in builds[0]
    assert re.search(r"tools: built dify in \d+ s", completed.stderr)
    assert project.built() == ["dify", "dify-plugin-daemon"]


def test_a_named_source_archive_with_the_pinned_sha256_is_built(project):
    project.fake_go(REFUSE)

    completed = project.run(DIFY_PLUGIN_DAEMON_SOURCE=str(project.good_archive))

    assert completed.returncode == 0, completed.stderr
    assert project.built() == ["dify", "dify-plugin-daemon"]


def test_the_shared_archive_is_the_last_resort(project):
    project.fake_go(REFUSE)
    write_archive(project.shared_archive)

    completed = project.run()

    assert completed.returncode == 0, completed.stderr
    assert f"checking {project.root}/../shared/third_party/dify-plugin-daemon-{RELEASE}-src.tar.gz (sha256)" in completed.stderr
    assert project.built() == ["dify", "dify-plugin-daemon"]
    assert "the tools are ready in" in completed.stderr


@pytest.mark.parametrize("where", ["named", "shared"])
def test_an_archive_that_is_not_the_pinned_one_is_refused_and_nothing_is_built(project, where):
    project.fake_go(REFUSE)
    other = write_archive(project.root.parent / "other.tar.gz", {**SOURCE_FILES, "cmd/server/main.go": "package evil\n"})
    if where == "shared":
        project.shared_archive.parent.mkdir(parents=True)
        shutil.copy(other, project.shared_archive)
        completed = project.run()
    else:
        write_archive(project.shared_archive)  # a good one, which a refused named source must not fall back to
        completed = project.run(DIFY_PLUGIN_DAEMON_SOURCE=str(other))

    assert completed.returncode == 1
    assert f"its sha256 is {sha256_of(other)}, not the pinned {sha256_of(project.good_archive)}" in completed.stderr
    assert [call for call in project.go_calls() if " build " in call] == []
    assert project.built() == []
    assert project.run("path", "dify").returncode == 1


def test_a_source_folder_with_other_files_is_refused(project):
    project.fake_go(REFUSE)
    (project.good_source / "cmd" / "server" / "patch.go").write_text("package main\n")

    completed = project.run(DIFY_PLUGIN_DAEMON_SOURCE=str(project.good_source))

    assert completed.returncode == 1
    assert "its files are not those of github.com/langgenius/dify-plugin-daemon at 1310a18b (0.6.10)" in completed.stderr
    assert project.built() == []


def test_with_no_source_at_all_it_fails_saying_what_to_do(project):
    project.fake_go(REFUSE)

    completed = project.run()

    assert completed.returncode == 1
    assert "403 Forbidden" in completed.stderr
    assert "DIFY_PLUGIN_DAEMON_SOURCE is not set and" in completed.stderr
    assert "DIFY_PLUGIN_DAEMON_SOURCE=/path/to/source scripts/tools" in completed.stderr
    assert project.built() == []


def test_path_never_builds(project):
    project.fake_go(INSTALL)

    completed = project.run("path", "dify-plugin-daemon")

    assert completed.returncode == 1
    assert "dify-plugin-daemon 0.6.10 is not built yet" in completed.stderr
    assert project.go_calls() == []


def test_package_without_the_cli_says_how_to_get_it(project):
    for name in ("package", "difypkg.py"):
        shutil.copy2(REPO_ROOT / "scripts" / name, project.root / "scripts" / name)

    completed = subprocess.run(
        [sys.executable, str(project.root / "scripts" / "package"), "--root", str(REPO_ROOT), "--check"],
        env={**os.environ, "PATH": f"{project.bin}:/usr/bin:/bin", "DIFY_PLUGIN_TOOLS_CACHE": str(project.cache)},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert completed.returncode == 1
    assert "the official `dify` CLI is not built yet. Run scripts/tools" in completed.stderr

"""`scripts/package`: what it puts in the .difypkg, and every rule it refuses to break.

Each rule is shown on a copy of the real package contents broken in exactly one way:
the script must exit 1, write nothing and print exactly one line naming the problem.
"""

import re
import shutil
import subprocess
import zipfile

import pytest
import yaml

from tests.packaging.conftest import dify_cli, run_package, violation_lines
from tests.runtime.harness import REPO_ROOT

ESSENTIAL_FILES = {
    "manifest.yaml",
    "main.py",
    "requirements.txt",
    "README.md",
    "PRIVACY.md",
    "provider/xinference.yaml",
    "provider/xinference.py",
    "_assets/icon_s_en.svg",
    "_assets/icon_l_en.svg",
    "models/llm/llm.py",
}


@pytest.fixture
def plugin_copy(package_contents, tmp_path):
    copy = tmp_path / "plugin"
    shutil.copytree(package_contents, copy)
    return copy


def edit_yaml(path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def manifest(change):
    return lambda root: edit_yaml(root / "manifest.yaml", change)


def provider(change):
    return lambda root: edit_yaml(root / "provider" / "xinference.yaml", change)


def write(relative_path, content):
    def mutate(root):
        target = root / relative_path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content) if isinstance(content, str) else target.write_bytes(content)

    return mutate


def delete(relative_path):
    return lambda root: (root / relative_path).unlink()


def many_files(root):
    for number in range(5000):
        (root / "_assets" / f"extra-{number}.txt").write_text("x")


def huge_file(root):
    with open(root / "_assets" / "huge.bin", "wb") as blob:
        blob.truncate(51 * 1024 * 1024)  # sparse: only its size matters


def requirements(*lines):
    return write("requirements.txt", "\n".join(lines) + "\n")


def edited(key, value):
    def change(data):
        *parents, last = key.split(".")
        for parent in parents:
            data = data[parent]
        if value is None:
            del data[last]
        else:
            data[last] = value

    return change


# What the official CLI lets through but the daemon or Marketplace review refuses:
# scripts/difypkg.py names each in one `violation:` line.
BROKEN = [
    ("bad-author", manifest(edited("author", "Xinference Community")), "manifest author 'Xinference Community' does not match"),
    ("author-with-dify", manifest(edited("author", "dify-fans")), "must not contain 'dify' or 'langgenius'"),
    ("bad-name", manifest(edited("name", "Xinference!")), "manifest name 'Xinference!' does not match"),
    ("no-privacy", manifest(edited("privacy", None)), "manifest privacy is missing"),
    ("privacy-file-missing", delete("PRIVACY.md"), "PRIVACY.md is not in the package"),
    ("privacy-placeholder", write("PRIVACY.md", "# Privacy\n\nTODO\n"), "PRIVACY.md must be a real privacy policy"),
    ("no-repo", manifest(edited("repo", None)), "manifest repo must be the URL of the source repository"),
    ("repo-not-a-forge", manifest(edited("repo", "https://example.com/xinference")), "on a known forge"),
    ("contact-not-an-email", manifest(edited("contact", "the xinference team")), "manifest contact must be an email address"),
    ("no-readme", delete("README.md"), "README.md is not in the package"),
    ("readme-not-english", write("README.md", "# Xinference 插件\n\nhttps://github.com/xorbitsai/inference\n在 Dify 中使用你通过 Xinference 部署的模型。"), "README.md must be in English: 14 CJK characters"),
    ("readme-without-repository", write("README.md", "# Xinference\n\nUse your Xinference models in Dify.\n"), "README.md must link a source repository"),
    ("dotenv-shipped", write(".env.production", "REMOTE_INSTALL_KEY=secret\n"), ".env.production is a .env file (secrets)"),
    ("bytecode", write("models/__pycache__/llm.cpython-312.pyc", b"\0"), "models/__pycache__/llm.cpython-312.pyc is Python bytecode"),
    ("log-file", write("debug.log", "log\n"), "debug.log is a log file"),
    ("virtualenv", write(".venv/pyvenv.cfg", "home = /usr\n"), ".venv/pyvenv.cfg is a virtual environment"),
    ("git-metadata", write(".git", "gitdir: /somewhere/worktrees/i10\n"), ".git is git metadata"),
    ("editor-folder", write(".idea/workspace.xml", "<project/>\n"), ".idea/workspace.xml is an editor or tool folder"),
    ("private-key", write("certs/server.pem", "-----BEGIN PRIVATE KEY-----\n"), "certs/server.pem is a private key"),
    ("too-many-files", many_files, "files, more than the Marketplace's 5000"),
    ("unbounded-requirement", requirements("dify_plugin>=0.9.0,<0.11", "requests>=2.31", "pydantic>=2.8,<3", "pyyaml>=6.0,<7"), "'requests>=2.31' must be pinned or bounded"),
    ("old-sdk", requirements("dify_plugin>=0.8,<0.11", "requests>=2.31,<3", "pydantic>=2.8,<3", "pyyaml>=6.0,<7"), "must require dify_plugin >= 0.9.0"),
    ("two-dependency-files", write("pyproject.toml", "[project]\nname = 'x'\n"), "both requirements.txt and pyproject.toml ship"),
    ("included-requirements", requirements("-r base.txt", "dify_plugin>=0.9.0,<0.11"), "keep the file self-contained"),
    ("field-without-required", provider(lambda data: data["model_credential_schema"]["credential_form_schemas"][0].pop("required")), "must set `required`"),
]  # fmt: skip

# What the official CLI refuses itself: its own message is passed on, nothing is written.
REFUSED_BY_THE_CLI = [
    ("bad-version", manifest(edited("version", "1.0")), "version"),
    ("icon-not-in-assets", manifest(edited("icon", "missing.svg")), "plugin icon not found"),  # the CLI does not name the file
    ("missing-large-icon", delete("_assets/icon_l_en.svg"), "icon large"),
    ("unparsable-provider", write("provider/xinference.yaml", "provider: [unclosed"), "yaml"),
    ("too-large", huge_file, "size"),
]  # fmt: skip


@pytest.mark.parametrize(("mutate", "expected"), [case[1:] for case in BROKEN], ids=[case[0] for case in BROKEN])
def test_each_broken_rule_is_one_violation_line(plugin_copy, tmp_path, mutate, expected):
    mutate(plugin_copy)
    output = tmp_path / "out.difypkg"

    completed = run_package(plugin_copy, output)

    assert completed.returncode == 1
    lines = violation_lines(completed)
    assert len(lines) == 1, lines
    assert expected in lines[0]
    assert not output.exists()


def test_the_unbroken_copy_has_no_violations(plugin_copy, tmp_path):
    """The baseline of the cases above: each of them adds exactly its own line."""
    completed = run_package(plugin_copy, tmp_path / "out.difypkg")
    assert completed.returncode == 0, completed.stderr
    assert violation_lines(completed) == []


def test_the_repository_builds_a_clean_package(built_package):
    with zipfile.ZipFile(built_package) as archive:
        entries = archive.infolist()
    names = [entry.filename for entry in entries]
    assert names == sorted(names)
    assert not any("\\" in name or name.endswith("/") for name in names)
    assert ESSENTIAL_FILES <= set(names)
    # .difyignore keeps the developer's tree out: no scripts, caches, venvs, dev requirements.
    assert not [name for name in names if name.startswith(("scripts/", ".venv/", ".git/", "dist/", "bench/"))]
    assert not [name for name in names if "__pycache__" in name or name.endswith((".pyc", ".log"))]
    # `.git` is a file in a git worktree: `.git/` in .difyignore let it ship (found by the CLI).
    assert {".env", ".git", "requirements-dev.txt", ".difyignore"}.isdisjoint(names)
    assert sum(entry.file_size for entry in entries) <= 50 * 1024 * 1024
    assert len(names) <= 5000


def test_the_default_output_is_dist_name_version(plugin_copy):
    version = yaml.safe_load((plugin_copy / "manifest.yaml").read_text())["version"]

    completed = run_package(plugin_copy, None)

    assert completed.returncode == 0, completed.stderr
    assert (plugin_copy / "dist" / f"xinference-{version}.difypkg").is_file()


@pytest.mark.parametrize(
    ("mutate", "expected"), [case[1:] for case in REFUSED_BY_THE_CLI], ids=[case[0] for case in REFUSED_BY_THE_CLI]
)
def test_what_the_cli_refuses_is_passed_on(plugin_copy, tmp_path, mutate, expected):
    mutate(plugin_copy)
    output = tmp_path / "out.difypkg"

    completed = run_package(plugin_copy, output)

    assert completed.returncode == 1
    assert "`dify plugin package` refused the plugin" in completed.stderr
    assert expected in completed.stderr.lower()
    assert not output.exists()


def test_the_printed_identifier_is_the_one_the_daemon_computes(plugin_copy, tmp_path):
    output = tmp_path / "out.difypkg"

    completed = run_package(plugin_copy, output)

    assert completed.returncode == 0, completed.stderr
    printed = re.search(r"unique identifier (\S+)", completed.stdout).group(1)
    manifest = yaml.safe_load((plugin_copy / "manifest.yaml").read_text())
    # `dify plugin checksum` runs the daemon's own decoder (pkg/plugin_packager/decoder).
    checksum = subprocess.run([dify_cli(), "plugin", "checksum", str(output)], capture_output=True, text=True)
    official = re.search(r"checksum=([0-9a-f]{64})", checksum.stdout + checksum.stderr).group(1)
    assert printed == f"{manifest['author']}/{manifest['name']}:{manifest['version']}@{official}"


def test_the_repository_passes_the_check_command():
    completed = run_package(REPO_ROOT, None, "--check")
    assert completed.returncode == 0, completed.stderr
    assert "no violations" in completed.stdout

"""`scripts/package`: what it puts in the .difypkg, and every rule it refuses to break.

Each rule is shown on a copy of the real package contents broken in exactly one way:
the script must exit 1, write nothing and print exactly one line naming the problem.
"""

import shutil
import zipfile

import pytest
import yaml

from tests.packaging.conftest import run_package, violation_lines
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


BROKEN = [
    ("bad-version", manifest(edited("version", "1.0")), "manifest version '1.0' does not match"),
    ("bad-meta-version", manifest(edited("meta.version", "v0.1.0")), "manifest meta.version 'v0.1.0'"),
    ("bad-type", manifest(edited("type", "bundle")), "manifest type must be 'plugin'"),
    ("bad-author", manifest(edited("author", "Xinference Community")), "manifest author 'Xinference Community' does not match"),
    ("author-with-dify", manifest(edited("author", "dify-fans")), "must not contain 'dify' or 'langgenius'"),
    ("bad-name", manifest(edited("name", "Xinference!")), "manifest name 'Xinference!' does not match"),
    ("no-label", manifest(edited("label.en_US", None)), "manifest label.en_US is missing"),
    ("no-description", manifest(edited("description.en_US", "")), "manifest description.en_US is missing"),
    ("no-created-at", manifest(edited("created_at", None)), "manifest created_at must be an RFC 3339 time"),
    ("zero-memory", manifest(edited("resource.memory", 0)), "manifest resource.memory must be a positive number"),
    ("bad-arch", manifest(edited("meta.arch", ["amd64", "x86"])), "manifest meta.arch must be a non-empty subset"),
    ("old-python", manifest(edited("meta.runner.version", "3.11")), "manifest meta.runner.version must be '3.12'"),
    ("bad-tag", manifest(edited("tags", ["llm"])), "manifest tags ['llm'] are not Dify tags"),
    ("icon-not-in-assets", manifest(edited("icon", "missing.svg")), "manifest icon 'missing.svg' is not in _assets/"),
    ("tools-in-a-model-plugin", manifest(edited("plugins.tools", ["provider/tools.yaml"])), "manifest plugins.tools must be empty"),
    ("no-privacy", manifest(edited("privacy", None)), "manifest privacy is missing"),
    ("no-repo", manifest(edited("repo", None)), "manifest repo must be the URL"),
    ("missing-provider-file", manifest(edited("plugins.models", ["provider/other.yaml"])), "provider/other.yaml is not in the package"),
    ("unparsable-provider", write("provider/xinference.yaml", "provider: [unclosed"), "provider/xinference.yaml does not parse as YAML"),
    ("missing-model-source", delete("models/llm/llm.py"), "model_sources models/llm/llm.py is not in the package"),
    ("missing-provider-source", delete("provider/xinference.py"), "provider_source provider/xinference.py is not in the package"),
    ("missing-large-icon", delete("_assets/icon_l_en.svg"), "icon_large.en_US 'icon_l_en.svg' is not in _assets/"),
    ("missing-localised-icon", provider(edited("icon_small.zh_Hans", "icon_s_zh.svg")), "icon_small.zh_Hans 'icon_s_zh.svg' is not in _assets/"),
    ("bad-model-type", provider(edited("supported_model_types", ["llm", "chat"])), "supported_model_types must be a non-empty subset"),
    ("bad-configurate-method", provider(edited("configurate_methods", ["manual"])), "configurate_methods must be a non-empty subset"),
    ("no-readme", delete("README.md"), "README.md is not in the package"),
    ("readme-not-english", write("README.md", "# Xinference 插件\n\n在 Dify 中使用你通过 Xinference 部署的模型，支持私有化与离线部署。"), "README.md must be in English"),
    ("privacy-file-missing", delete("PRIVACY.md"), "manifest privacy 'PRIVACY.md' is not in the package"),
    ("privacy-placeholder", write("PRIVACY.md", "# Privacy\n\nTODO\n"), "PRIVACY.md must be a real privacy policy"),
    ("dotenv-not-ignored", write(".env", "REMOTE_INSTALL_KEY=secret\n"), ".env is a .env file (secrets) and must not ship"),
    ("bytecode", write("models/__pycache__/llm.cpython-312.pyc", b"\0"), "models/__pycache__/llm.cpython-312.pyc is Python bytecode"),
    ("log-file", write("debug.log", "log\n"), "debug.log is a log file"),
    ("virtualenv", write(".venv/pyvenv.cfg", "home = /usr\n"), ".venv/pyvenv.cfg is a virtual environment"),
    ("git-metadata", write(".git/HEAD", "ref: refs/heads/main\n"), ".git/HEAD is git metadata"),
    ("too-many-files", many_files, "files, more than the Marketplace's 5000"),
    ("too-large", huge_file, "more than 52428800; largest: _assets/huge.bin (53477376 bytes)"),
    ("unbounded-requirement", requirements("dify_plugin>=0.9.0,<0.11", "requests>=2.31", "pydantic>=2.8,<3", "pyyaml>=6.0,<7"), "'requests>=2.31' must be pinned or bounded"),
    ("old-sdk", requirements("dify_plugin>=0.8,<0.11", "requests>=2.31,<3", "pydantic>=2.8,<3", "pyyaml>=6.0,<7"), "must require dify_plugin >= 0.9.0"),
    ("two-dependency-files", write("pyproject.toml", "[project]\nname = 'x'\n"), "both requirements.txt and pyproject.toml ship"),
    ("negation-in-difyignore", write(".difyignore", "*.log\n!keep.log\n"), "'!keep.log' re-includes files"),
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
    assert {".env", "requirements-dev.txt", ".difyignore"}.isdisjoint(names)
    assert sum(entry.file_size for entry in entries) <= 50 * 1024 * 1024
    assert len(names) <= 5000


def test_the_default_output_is_dist_name_version(plugin_copy):
    version = yaml.safe_load((plugin_copy / "manifest.yaml").read_text())["version"]

    completed = run_package(plugin_copy, None)

    assert completed.returncode == 0, completed.stderr
    assert (plugin_copy / "dist" / f"xinference-{version}.difypkg").is_file()


def test_difyignore_is_read_as_the_official_packager_reads_it(plugin_copy, tmp_path):
    (plugin_copy / ".difyignore").write_text(
        "# comments and blank lines are skipped\n\n"
        ".env\n"  # a name: anywhere
        "*.tmp\n"  # a glob: anywhere
        "drafts/\n"  # a folder only
        "/notes.txt\n"  # anchored at the root
        "docs/internal\n"  # a path: from the root, with everything under it
    )
    for path in [".env", "a.tmp", "models/b.tmp", "drafts/x.md", "models/drafts/y.md", "notes.txt",
                 "docs/internal/z.md", "models/notes.txt", "drafts.md", "docs/public.md"]:  # fmt: skip
        write(path, "content\n")(plugin_copy)
    output = tmp_path / "out.difypkg"

    completed = run_package(plugin_copy, output)

    assert completed.returncode == 0, completed.stderr
    names = set(zipfile.ZipFile(output).namelist())
    assert {"models/notes.txt", "drafts.md", "docs/public.md", ".difyignore"} <= names
    ignored = {".env", "a.tmp", "models/b.tmp", "drafts/x.md", "models/drafts/y.md", "notes.txt", "docs/internal/z.md"}
    assert ignored.isdisjoint(names)


def test_the_repository_passes_the_check_command():
    completed = run_package(REPO_ROOT, None, "--check")
    assert completed.returncode == 0, completed.stderr
    assert "no violations" in completed.stdout

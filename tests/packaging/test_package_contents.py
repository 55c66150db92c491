"""What a Dify admin gets in the .difypkg: the admin README and its translations, nothing developer-only.

Read from the built zip itself, however it was built.
"""

import re
import zipfile

import pytest
import yaml

from tests.runtime.harness import REPO_ROOT

# How the daemon finds translations (AvailableI18nReadme in dify-plugin-daemon).
TRANSLATION_NAME = re.compile(r"^readme/README_([a-z]{2}_[A-Za-z]{2,})\.md$")
# The Marketplace toolkit's check of manifest `contact`.
EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$")
DEVELOPER_ONLY_FILES = {
    "DEVELOPMENT.md", "CHANGELOG.md", ".env", ".env.example", "requirements-dev.txt", "pytest.ini", ".gitignore",
}  # fmt: skip
DEVELOPER_ONLY_FOLDERS = (
    "tests/", "scripts/", "bench/", "notes/", "docs/", ".ci/", ".github/", ".venv/", ".testbed/",
    ".pytest_cache/", ".ruff_cache/", ".mypy_cache/", ".idea/", ".vscode/",
)  # fmt: skip


@pytest.fixture(scope="module")
def archive(built_package):
    with zipfile.ZipFile(built_package) as package:
        yield package


def test_the_admin_readme_ships_as_it_is_in_the_repository(archive):
    assert archive.read("README.md") == (REPO_ROOT / "README.md").read_bytes()


def test_the_translations_ship_where_dify_looks_for_them(archive):
    locales = {match.group(1) for name in archive.namelist() if (match := TRANSLATION_NAME.match(name))}
    assert locales == {"zh_Hans", "ja_JP"}
    for locale in locales:
        shipped = archive.read(f"readme/README_{locale}.md")
        assert shipped == (REPO_ROOT / "readme" / f"README_{locale}.md").read_bytes()


def test_nothing_developer_only_ships(archive):
    names = archive.namelist()
    assert sorted(DEVELOPER_ONLY_FILES.intersection(names)) == []
    assert [name for name in names if name.startswith(DEVELOPER_ONLY_FOLDERS)] == []
    assert (REPO_ROOT / "DEVELOPMENT.md").is_file(), "the developer guide lives in the repository"


def test_the_manifest_carries_what_the_marketplace_requires(archive):
    manifest = yaml.safe_load(archive.read("manifest.yaml"))
    assert EMAIL.match(str(manifest.get("contact") or "")), manifest.get("contact")
    assert re.match(r"^https://github\.com/[^/\s]+/[^/\s]+$", manifest["repo"])
    assert re.match(r"^\d+\.\d+\.\d+$", str(manifest["meta"]["minimum_dify_version"]))

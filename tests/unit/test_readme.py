"""The README a Dify admin reads in the Marketplace, and its translations.

README.md must pass the Marketplace's README rules; each translation in readme/ must
be the same page in another language: the same headings at the same levels, the same
table rows in each section, the same commands, code and error messages (they stay as
the plugin and the shell print them), and the provider form's field labels as the
form shows them in that language.
"""

import re

import pytest
import yaml

from tests.runtime.harness import REPO_ROOT

README = REPO_ROOT / "README.md"
TRANSLATIONS = {
    "zh_Hans": REPO_ROOT / "readme" / "README_zh_Hans.md",
    "ja_JP": REPO_ROOT / "readme" / "README_ja_JP.md",
}
FENCED_BLOCK = re.compile(r"```.*?```", re.DOTALL)
CJK = re.compile(r"[\u3400-\u4DBF\u4E00-\u9FFF]")  # what the Marketplace toolkit counts
SOURCE_REPOSITORY = re.compile(r"https?://(?:www\.)?github\.com/[^\s)>\"]+")
HEADING = re.compile(r"^(#{1,6}) ", re.MULTILINE)
URL = re.compile(r"https?://[A-Za-z0-9._~:/?#@!$&'*+,;=%-]+")


def fenced_blocks(text: str) -> list[str]:
    """Each fenced block's commands; comments may be translated, the commands may not."""
    blocks = [block.splitlines()[1:-1] for block in FENCED_BLOCK.findall(text)]  # without the ``` lines
    return [
        "\n".join(line.split("#", 1)[0].rstrip() for line in lines if line.split("#", 1)[0].strip()) for lines in blocks
    ]


def inline_code(text: str) -> set[str]:
    return set(re.findall(r"`([^`\n]+)`", FENCED_BLOCK.sub("", text)))


def heading_levels(text: str) -> list[int]:
    return [len(marks) for marks in HEADING.findall(FENCED_BLOCK.sub("", text))]


def table_rows_per_section(text: str) -> list[int]:
    sections = HEADING.split(FENCED_BLOCK.sub("", text))
    return [sum(1 for line in section.splitlines() if line.startswith("|")) for section in sections[::2]]


def form_labels(locale: str) -> list[str]:
    """The labels of the provider's credential form (and the model name field) in one language."""
    provider = yaml.safe_load((REPO_ROOT / "provider" / "xinference.yaml").read_text())
    schema = provider["model_credential_schema"]
    fields = [schema["model"], *schema["credential_form_schemas"]]
    return [field["label"][locale] for field in fields]


@pytest.fixture(scope="module")
def english() -> str:
    return README.read_text(encoding="utf-8")


def test_the_readme_has_no_cjk_outside_fenced_code(english):
    assert CJK.findall(FENCED_BLOCK.sub("", english)) == []


def test_the_readme_names_the_source_repository_of_the_manifest(english):
    manifest = yaml.safe_load((REPO_ROOT / "manifest.yaml").read_text())
    assert SOURCE_REPOSITORY.search(english)
    assert manifest["repo"] in english


def test_the_readme_states_the_minimum_dify_version_of_the_manifest(english):
    manifest = yaml.safe_load((REPO_ROOT / "manifest.yaml").read_text())
    assert f"Supported Dify versions: {manifest['meta']['minimum_dify_version']} and newer" in english


def test_the_development_section_holds_setup_test_demo_and_the_guide(english):
    development = english.split("\n## Development\n", 1)[1]
    assert "\n## " not in development, "Development is the last section"
    assert fenced_blocks(development) == ["scripts/setup\nscripts/test\nscripts/demo"]
    assert "DEVELOPMENT.md" in development
    assert (REPO_ROOT / "DEVELOPMENT.md").is_file()


def test_ci_runs_the_commands_the_readme_documents(english):
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    for command in ("scripts/setup", "scripts/test"):
        assert command in english and re.search(rf"^\S.*\b{command}\b", ci, re.MULTILINE), command


def test_the_readme_names_every_field_of_the_provider_form(english):
    missing = [label for label in form_labels("en_US") if f"**{label}**" not in english]
    assert missing == []


@pytest.mark.parametrize("locale", TRANSLATIONS)
class TestTranslation:
    @pytest.fixture
    def translation(self, locale) -> str:
        return TRANSLATIONS[locale].read_text(encoding="utf-8")

    def test_it_has_the_same_headings_at_the_same_levels(self, english, translation):
        assert heading_levels(translation) == heading_levels(english)

    def test_each_section_has_the_same_table_rows(self, english, translation):
        assert table_rows_per_section(translation) == table_rows_per_section(english)

    def test_it_keeps_every_command_and_code_span(self, english, translation):
        assert fenced_blocks(translation) == fenced_blocks(english)
        assert sorted(inline_code(english) - inline_code(translation)) == [], "missing in the translation"
        assert sorted(inline_code(translation) - inline_code(english)) == [], "not in the English README"

    def test_it_names_the_form_fields_as_the_form_shows_them_in_its_language(self, locale, translation):
        missing = [label for label in form_labels(locale) if f"**{label}**" not in translation]
        assert missing == []

    def test_it_keeps_the_links(self, english, translation):
        def links(text: str) -> set[str]:
            return {url.rstrip(".,;:") for url in URL.findall(text)}

        assert links(translation) == links(english)

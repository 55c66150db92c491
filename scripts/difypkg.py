"""Builds and checks a .difypkg the way `dify plugin package` and the Marketplace do.

A .difypkg is a zip of the plugin folder: every file not excluded by `.difyignore`
(gitignore syntax; `.gitignore` when there is no `.difyignore`; nothing is excluded
by default), at sorted `/` paths, at most 50 MB uncompressed. Before writing it, the
checks below report every rule the package breaks, one line each:
  - what the packager and the daemon validate (manifest fields and patterns, provider
    file, assets), read from langgenius/dify-plugin-daemon;
  - what Marketplace review asks for (privacy policy, English README, no secrets or
    build leftovers, file count, bounded requirements, SDK version, author name).

Used by `scripts/package`; runs with the project's .venv (PyYAML, packaging).
"""

import io
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import Version

MAX_UNCOMPRESSED_BYTES = 50 * 1024 * 1024
MAX_FILES = 5000
VERSION_PATTERN = re.compile(r"^\d{1,4}(\.\d{1,4}){2}(-\w{1,16})?$")
AUTHOR_PATTERN = re.compile(r"^[a-z0-9_-]{1,64}$")
NAME_PATTERN = re.compile(r"^[a-z0-9_-]{1,128}$")
ARCHES = {"amd64", "arm64"}
RUNNER = {"language": "python", "version": "3.12", "entrypoint": "main"}
TAGS = {
    "search", "image", "videos", "weather", "finance", "design", "travel", "social", "news",
    "medical", "productivity", "education", "business", "entertainment", "utilities", "agent",
    "rag", "other", "trigger",
}  # fmt: skip
LOCALES = ("en_US", "zh_Hans", "ja_JP", "pt_BR")
MODEL_TYPES = {"llm", "text-embedding", "rerank", "speech2text", "tts", "moderation"}
CONFIGURATE_METHODS = {"predefined-model", "customizable-model"}
FORM_TYPES = {"text-input", "secret-input", "select", "radio", "switch"}
NON_MODEL_EXTENSIONS = ("tools", "endpoints", "agent_strategies", "datasources", "triggers")
MINIMUM_SDK = Version("0.9.0")
UPPER_BOUND_OPERATORS = {"==", "===", "~=", "<", "<="}
FORBIDDEN_AUTHOR_WORDS = ("dify", "langgenius")
MIN_PRIVACY_POLICY_CHARS = 300
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)  # fixed, so the same tree gives the same bytes


# ---- which files go into the package ---------------------------------------------------


@dataclass(frozen=True)
class IgnorePattern:
    """One `.difyignore` line, matched as the daemon's packager (go-git's gitignore) does."""

    parts: tuple[str, ...]
    dir_only: bool
    anchored: bool  # the pattern has a `/` inside: matched from the root, not by name
    negated: bool
    line: str

    @classmethod
    def parse(cls, line: str) -> "IgnorePattern":
        text = line
        negated = text.startswith("!")
        if negated:
            text = text[1:]
        if not text.endswith("\\ "):
            text = text.rstrip(" ")
        dir_only = text.endswith("/")
        if dir_only:
            text = text[:-1]
        return cls(tuple(text.split("/")), dir_only, "/" in text, negated, line)

    def excludes(self, parts: list[str], is_dir: bool) -> bool:
        matched = self._glob_match(parts, is_dir) if self.anchored else self._name_match(parts, is_dir)
        return matched and not self.negated

    def _name_match(self, parts: list[str], is_dir: bool) -> bool:
        for position, name in enumerate(parts):
            if _component_matches(self.parts[0], name):
                return not (self.dir_only and not is_dir and position == len(parts) - 1)
        return False

    def _glob_match(self, parts: list[str], is_dir: bool) -> bool:
        remaining = list(parts)
        matched = traverse = False
        for position, piece in enumerate(self.parts):
            if piece == "":
                traverse = False
                continue
            if piece == "**":
                if position == len(self.parts) - 1:
                    break
                traverse = True
                continue
            if "**" in piece or not remaining:
                return False
            if traverse:
                traverse = False
                while remaining:
                    name = remaining.pop(0)
                    if _component_matches(piece, name):
                        matched = True
                        break
                    if not remaining:
                        matched = False
            else:
                if not _component_matches(piece, remaining.pop(0)):
                    return False
                matched = True
        if matched and self.dir_only and not is_dir and not remaining:
            return False
        return matched


def _component_matches(pattern: str, name: str) -> bool:
    """Go's `filepath.Match` for one path component: `*`, `?`, `[...]` (`^` negates), `\\x`."""
    regex, position = [], 0
    while position < len(pattern):
        char = pattern[position]
        if char == "*":
            regex.append("[^/]*")
        elif char == "?":
            regex.append("[^/]")
        elif char == "\\" and position + 1 < len(pattern):
            position += 1
            regex.append(re.escape(pattern[position]))
        elif char == "[":
            end = pattern.find("]", position + 2)
            if end == -1:
                return False  # Go reports ErrBadPattern; the packager then treats it as no match
            body = pattern[position + 1 : end].replace("\\", "\\\\")
            regex.append("[" + ("^" + body[1:] if body.startswith("^") else body) + "]")
            position = end
        else:
            regex.append(re.escape(char))
        position += 1
    return re.fullmatch("".join(regex), name) is not None


def read_ignore_file(root: Path) -> tuple[str | None, list[IgnorePattern]]:
    for name in (".difyignore", ".gitignore"):
        path = root / name
        if path.is_file():
            lines = (line.strip() for line in path.read_text(encoding="utf-8").split("\n"))
            return name, [IgnorePattern.parse(line) for line in lines if line and not line.startswith("#")]
    return None, []


def packaged_files(root: Path, patterns: list[IgnorePattern]) -> list[str]:
    """The `/`-separated paths, sorted, of every file the package will hold."""
    found: list[str] = []

    def walk(folder: Path, prefix: list[str]) -> None:
        for entry in sorted(folder.iterdir(), key=lambda path: path.name):
            parts = [*prefix, entry.name]
            is_dir = entry.is_dir() and not entry.is_symlink()
            if any(pattern.excludes(parts, is_dir) for pattern in patterns):
                continue
            if is_dir:
                walk(entry, parts)
            elif entry.is_file():
                found.append("/".join(parts))

    walk(root, [])
    return sorted(found)


# ---- the package under check -------------------------------------------------------------


@dataclass
class PluginFolder:
    """The plugin folder as the package will hold it, with its YAML files parsed."""

    root: Path
    ignore_file: str | None
    ignore_patterns: list[IgnorePattern]
    files: list[str]
    file_set: set[str]
    manifest: dict = field(default_factory=dict)
    providers: dict[str, dict] = field(default_factory=dict)  # plugins.models path → parsed
    load_problems: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, root: Path) -> "PluginFolder":
        ignore_file, patterns = read_ignore_file(root)
        files = packaged_files(root, patterns)
        folder = cls(root, ignore_file, patterns, files, set(files))
        folder._load_yaml_files()
        return folder

    def _load_yaml_files(self) -> None:
        manifest, problem = self._load_yaml("manifest.yaml")
        if problem:
            self.load_problems.append(problem)
            return
        self.manifest = manifest
        for path in _get(manifest, "plugins.models") or []:
            provider, problem = self._load_yaml(str(path))
            if problem:
                self.load_problems.append(f"manifest plugins.models: {problem}")
            else:
                self.providers[str(path)] = provider

    def _load_yaml(self, path: str) -> tuple[dict, str | None]:
        if not self.has(path):
            return {}, f"{path} is not in the package"
        try:
            data = yaml.safe_load(self.text(path))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            return {}, f"{path} does not parse as YAML: {str(exc).splitlines()[0]}"
        if not isinstance(data, dict):
            return {}, f"{path} is not a YAML mapping"
        return data, None

    def has(self, path: str) -> bool:
        return str(PurePosixPath(path)) in self.file_set

    def size(self, path: str) -> int:
        return (self.root / path).stat().st_size

    def text(self, path: str) -> str:
        return (self.root / path).read_text(encoding="utf-8")

    def asset(self, name: str) -> bool:
        return self.has(f"_assets/{name}")


Check = Callable[[PluginFolder], Iterator[str]]
CHECKS: list[Check] = []


def check(function: Check) -> Check:
    CHECKS.append(function)
    return function


def violations(folder: PluginFolder) -> list[str]:
    return [problem for run in CHECKS for problem in run(folder)]


def _get(mapping: object, dotted: str) -> Any:  # a parsed YAML value
    for key in dotted.split("."):
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping


# ---- manifest.yaml -----------------------------------------------------------------------


@check
def yaml_files_load(folder: PluginFolder) -> Iterator[str]:
    yield from folder.load_problems


@check
def manifest_fields(folder: PluginFolder) -> Iterator[str]:
    manifest = folder.manifest
    if not manifest:
        return
    for key in ("version", "meta.version"):
        value = _get(manifest, key)
        if not VERSION_PATTERN.match(str(value or "")):
            yield f"manifest {key} {value!r} does not match {VERSION_PATTERN.pattern}"
    if manifest.get("type") != "plugin":
        yield f"manifest type must be 'plugin', got {manifest.get('type')!r}"
    author, name = str(manifest.get("author") or ""), str(manifest.get("name") or "")
    if not AUTHOR_PATTERN.match(author):
        yield f"manifest author {author!r} does not match {AUTHOR_PATTERN.pattern}"
    elif any(word in author for word in FORBIDDEN_AUTHOR_WORDS):
        yield f"manifest author {author!r} must not contain 'dify' or 'langgenius' (Marketplace)"
    if not NAME_PATTERN.match(name):
        yield f"manifest name {name!r} does not match {NAME_PATTERN.pattern}"
    for key in ("label", "description"):
        if not str(_get(manifest, f"{key}.en_US") or "").strip():
            yield f"manifest {key}.en_US is missing"
    yield from _manifest_created_at(manifest)
    memory = _get(manifest, "resource.memory")
    if not isinstance(memory, int) or isinstance(memory, bool) or memory <= 0:
        yield f"manifest resource.memory must be a positive number of bytes, got {memory!r}"
    yield from _manifest_meta(folder, manifest)
    bad_tags = sorted(set(manifest.get("tags") or []) - TAGS)
    if bad_tags:
        yield f"manifest tags {bad_tags} are not Dify tags ({', '.join(sorted(TAGS))})"


def _manifest_created_at(manifest: dict) -> Iterator[str]:
    created_at = manifest.get("created_at")
    if isinstance(created_at, datetime):
        return
    try:
        datetime.fromisoformat(str(created_at).replace("Z", "+00:00"))
    except ValueError:
        yield f"manifest created_at must be an RFC 3339 time, got {created_at!r}"


def _manifest_meta(folder: PluginFolder, manifest: dict) -> Iterator[str]:
    arch = _get(manifest, "meta.arch")
    if not isinstance(arch, list) or not arch or not set(arch) <= ARCHES:
        yield f"manifest meta.arch must be a non-empty subset of {sorted(ARCHES)}, got {arch!r}"
    for key, expected in RUNNER.items():
        value = _get(manifest, f"meta.runner.{key}")
        if str(value) != expected:
            yield f"manifest meta.runner.{key} must be {expected!r}, got {value!r}"
    entrypoint = _get(manifest, "meta.runner.entrypoint")
    if entrypoint == RUNNER["entrypoint"] and not folder.has(f"{entrypoint}.py"):
        yield f"the entrypoint {entrypoint}.py is not in the package"


@check
def manifest_icons(folder: PluginFolder) -> Iterator[str]:
    if not folder.manifest:
        return
    for key in ("icon", "icon_dark"):
        icon = folder.manifest.get(key)
        if key == "icon" and not icon:
            yield "manifest icon is missing"
        elif icon and not folder.asset(str(icon)):
            yield f"manifest {key} {icon!r} is not in _assets/"


@check
def manifest_extensions(folder: PluginFolder) -> Iterator[str]:
    if not folder.manifest:
        return
    plugins = folder.manifest.get("plugins") or {}
    for kind in NON_MODEL_EXTENSIONS:
        if plugins.get(kind):
            yield f"manifest plugins.{kind} must be empty: a model plugin declares only models"
    if not plugins.get("models"):
        yield "manifest plugins.models must list the provider file"


@check
def marketplace_manifest_links(folder: PluginFolder) -> Iterator[str]:
    if not folder.manifest:
        return
    privacy = folder.manifest.get("privacy")
    if not privacy:
        yield "manifest privacy is missing: point it at PRIVACY.md (Marketplace)"
    elif not folder.has(str(privacy)):
        yield f"manifest privacy {privacy!r} is not in the package"
    repo = str(folder.manifest.get("repo") or "")
    if not re.match(r"^https?://[^\s/]+/\S+$", repo):
        yield f"manifest repo must be the URL of the source repository (Marketplace), got {repo!r}"


# ---- the provider file -------------------------------------------------------------------


@check
def provider_fields(folder: PluginFolder) -> Iterator[str]:
    for path, provider in folder.providers.items():
        if not str(provider.get("provider") or "").strip():
            yield f"{path}: provider is missing"
        if not str(_get(provider, "label.en_US") or "").strip():
            yield f"{path}: label.en_US is missing"
        types = provider.get("supported_model_types") or []
        if not types or not set(types) <= MODEL_TYPES:
            yield f"{path}: supported_model_types must be a non-empty subset of {sorted(MODEL_TYPES)}, got {types!r}"
        methods = provider.get("configurate_methods") or []
        if not methods or not set(methods) <= CONFIGURATE_METHODS:
            yield f"{path}: configurate_methods must be a non-empty subset of {sorted(CONFIGURATE_METHODS)}, got {methods!r}"
        yield from _provider_forms(path, provider)


def _provider_forms(path: str, provider: dict) -> Iterator[str]:
    for schema in ("provider_credential_schema", "model_credential_schema"):
        for form in _get(provider, f"{schema}.credential_form_schemas") or []:
            variable = form.get("variable")
            if form.get("type") not in FORM_TYPES:
                yield f"{path}: {schema} field {variable!r} has type {form.get('type')!r}, not one of {sorted(FORM_TYPES)}"
            if "required" not in form:
                yield f"{path}: {schema} field {variable!r} must set `required` (the SDK and the daemon default differently)"


@check
def provider_sources(folder: PluginFolder) -> Iterator[str]:
    for path, provider in folder.providers.items():
        python = _get(provider, "extra.python") or {}
        source = python.get("provider_source")
        if not source:
            yield f"{path}: extra.python.provider_source is missing"
        elif not folder.has(str(source)):
            yield f"{path}: extra.python.provider_source {source} is not in the package"
        model_sources = python.get("model_sources") or []
        if not model_sources:
            yield f"{path}: extra.python.model_sources is empty"
        for model_source in model_sources:
            if not folder.has(str(model_source)):
                yield f"{path}: extra.python.model_sources {model_source} is not in the package"


@check
def provider_icons(folder: PluginFolder) -> Iterator[str]:
    for path, provider in folder.providers.items():
        for key in ("icon_small", "icon_large", "icon_small_dark", "icon_large_dark"):
            icons = provider.get(key) or {}
            for locale in LOCALES:
                icon = icons.get(locale) if isinstance(icons, dict) else None
                if icon and not folder.asset(str(icon)):
                    yield f"{path}: {key}.{locale} {icon!r} is not in _assets/"


# ---- Marketplace review ------------------------------------------------------------------


@check
def documents(folder: PluginFolder) -> Iterator[str]:
    if not folder.has("README.md"):
        yield "README.md is not in the package (Dify requires it to install)"
    elif not _mostly_english(folder.text("README.md")):
        yield "README.md must be in English (translations go in readme/README_<lang>.md)"
    privacy = folder.manifest.get("privacy")
    if privacy and folder.has(str(privacy)) and not _real_policy(folder.text(str(privacy))):
        yield f"{privacy} must be a real privacy policy (at least {MIN_PRIVACY_POLICY_CHARS} characters, no placeholders)"


def _mostly_english(text: str) -> bool:
    letters = [char for char in text if char.isalpha()]
    return bool(letters) and sum(char.isascii() for char in letters) / len(letters) >= 0.9


def _real_policy(text: str) -> bool:
    placeholder = re.search(r"\b(TODO|TBD|lorem ipsum)\b|<[^>]*>", text, re.IGNORECASE)
    return len(text.strip()) >= MIN_PRIVACY_POLICY_CHARS and not placeholder


_LEFTOVERS: list[tuple[Callable[[PurePosixPath], bool], str]] = [
    (lambda path: path.name == ".env" or path.name.startswith(".env.") and path.name != ".env.example",
     "a .env file (secrets)"),
    (lambda path: ".git" in path.parts[:-1] or path.name == ".git", "git metadata"),
    (lambda path: any(part in (".venv", "venv") for part in path.parts[:-1]) or path.name == "pyvenv.cfg",
     "a virtual environment"),
    (lambda path: "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo"), "Python bytecode"),
    (lambda path: path.suffix == ".log" or "logs" in path.parts[:-1], "a log file"),
]  # fmt: skip


@check
def leftovers(folder: PluginFolder) -> Iterator[str]:
    for path in folder.files:
        posix = PurePosixPath(path)
        reason = next((what for matches, what in _LEFTOVERS if matches(posix)), None)
        if reason:
            yield f"{path} is {reason} and must not ship: add it to {folder.ignore_file or '.difyignore'}"


@check
def ignore_file_is_understood(folder: PluginFolder) -> Iterator[str]:
    for pattern in folder.ignore_patterns:
        if pattern.negated:
            yield f"{folder.ignore_file}: {pattern.line!r} re-includes files, which `dify plugin package` ignores"


@check
def size_and_count(folder: PluginFolder) -> Iterator[str]:
    if len(folder.files) > MAX_FILES:
        yield f"the package holds {len(folder.files)} files, more than the Marketplace's {MAX_FILES}"
    sizes = sorted(((folder.size(path), path) for path in folder.files), reverse=True)
    total = sum(size for size, _ in sizes)
    if total > MAX_UNCOMPRESSED_BYTES:
        largest = ", ".join(f"{path} ({size} bytes)" for size, path in sizes[:5])
        yield f"the package is {total} bytes uncompressed, more than {MAX_UNCOMPRESSED_BYTES}; largest: {largest}"


@check
def requirements(folder: PluginFolder) -> Iterator[str]:
    if not folder.has("requirements.txt"):
        yield "requirements.txt is not in the package"
        return
    if folder.has("pyproject.toml"):
        yield "both requirements.txt and pyproject.toml ship; the daemon prefers pyproject.toml: keep one"
    sdk_seen = False
    for number, raw in enumerate(folder.text("requirements.txt").splitlines(), start=1):
        line = raw.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            yield f"requirements.txt:{number}: {line!r}: keep the file self-contained, one requirement per line"
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement as exc:
            yield f"requirements.txt:{number}: {line!r} is not a valid requirement: {exc}"
            continue
        if requirement.url or not any(spec.operator in UPPER_BOUND_OPERATORS for spec in requirement.specifier):
            yield f"requirements.txt:{number}: {line!r} must be pinned or bounded (==, ~= or an upper bound)"
        if requirement.name.lower().replace("-", "_") == "dify_plugin":
            sdk_seen = True
            if _allows_below(requirement, MINIMUM_SDK):
                yield f"requirements.txt:{number}: {line!r} must require dify_plugin >= {MINIMUM_SDK}"
    if not sdk_seen:
        yield "requirements.txt does not require dify_plugin"


def _allows_below(requirement: Requirement, minimum: Version) -> bool:
    """Whether the specifier lacks a lower bound at `minimum` or above."""
    for spec in requirement.specifier:
        if spec.operator in (">=", ">", "==", "~=", "==="):
            try:
                if Version(spec.version.removesuffix(".*")) >= minimum:
                    return False
            except ValueError:
                continue
    return True


# ---- the zip -----------------------------------------------------------------------------


def package_name(folder: PluginFolder) -> str:
    return f"{folder.manifest.get('name')}-{folder.manifest.get('version')}.difypkg"


def zip_bytes(folder: PluginFolder) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in folder.files:
            entry = zipfile.ZipInfo(path, date_time=ZIP_TIMESTAMP)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, (folder.root / path).read_bytes())
    return buffer.getvalue()

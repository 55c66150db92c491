"""What `dify plugin package` leaves unchecked, and the identifier the daemon gives a package.

The official CLI builds the .difypkg and validates what the daemon needs to load it
(manifest fields, provider file, icons, 50 MB, `.difyignore`). This module reads the
package it built and reports, one line each, only what the CLI lets through:
  - what the daemon refuses at install though the CLI accepts it (author and name patterns);
  - what Marketplace review refuses (langgenius/dify-marketplace-toolkit): privacy policy,
    source repository, contact, README in English with a repository link, files that must
    not ship, at most 5,000 files, bounded requirements, one dependency file, the SDK version,
    an author name free of "dify"/"langgenius";
  - one rule of our own: every credential field sets `required` (the SDK and the daemon
    default it differently).

`unique_identifier` is `author/name:version@sha256` exactly as the daemon computes it
(pkg/plugin_packager/decoder/checksum.go): sha256 over the concatenated
`sha256(path) ‖ sha256(content)` of every zip entry, sorted by path.

Used by `scripts/package`; runs with the project's .venv (PyYAML, packaging).
"""

import hashlib
import posixpath
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import Version

MAX_FILES = 5000
AUTHOR_PATTERN = re.compile(r"^[a-z0-9_-]{1,64}$")  # the daemon's plugin_unique_identifier rule
NAME_PATTERN = re.compile(r"^[a-z0-9_-]{1,128}$")
FORBIDDEN_AUTHOR_WORDS = ("dify", "langgenius")
MINIMUM_SDK = Version("0.9.0")
UPPER_BOUND_OPERATORS = {"==", "===", "~=", "<", "<="}
MIN_PRIVACY_POLICY_CHARS = 300
EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$")
SOURCE_REPOSITORY = re.compile(
    r"https?://(?:www\.)?(?:github\.com|gitlab\.com|bitbucket\.org|gitee\.com|codeberg\.org|git\.sr\.ht)/[^\s)>\"]+",
    re.IGNORECASE,
)
CJK = re.compile(r"[\u3400-\u4DBF\u4E00-\u9FFF]")
CODE_FENCE = re.compile(r"```.*?```", re.DOTALL)


@dataclass
class Package:
    """A built .difypkg: its entries and the parsed manifest."""

    path: Path
    names: list[str]
    contents: dict[str, bytes]
    manifest: dict

    @classmethod
    def open(cls, path: Path) -> "Package":
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            contents = {name: archive.read(name) for name in names}
        manifest = yaml.safe_load(contents.get("manifest.yaml", b"{}")) or {}
        return cls(path, names, contents, manifest if isinstance(manifest, dict) else {})

    def has(self, name: str) -> bool:
        return name in self.contents

    def text(self, name: str) -> str:
        return self.contents[name].decode("utf-8", errors="replace")


def unique_identifier(package: Package) -> str:
    """`author/name:version@checksum`, the identifier the daemon gives this package."""
    digests = {}
    for name, content in package.contents.items():
        directory, filename = posixpath.split(name)
        digests[posixpath.join(directory, filename)] = hashlib.sha256(content).digest()
    joined = b"".join(hashlib.sha256(name.encode()).digest() + digests[name] for name in sorted(digests))
    manifest = package.manifest
    identity = f"{manifest.get('author')}/{manifest.get('name')}:{manifest.get('version')}"
    return f"{identity}@{hashlib.sha256(joined).hexdigest()}"


# ---- the checks ------------------------------------------------------------------------

Check = Callable[[Package], Iterator[str]]
CHECKS: list[Check] = []


def check(function: Check) -> Check:
    CHECKS.append(function)
    return function


def violations(package: Package) -> list[str]:
    return [problem for run in CHECKS for problem in run(package)]


def warnings(package: Package) -> list[str]:
    """What blocks only a Marketplace submission and needs a decision we cannot make here."""
    contact = str(package.manifest.get("contact") or "")
    if not contact:
        return ["manifest contact is missing: Marketplace review requires the maintainer's email"]
    return []


@check
def identity(package: Package) -> Iterator[str]:
    author, name = str(package.manifest.get("author") or ""), str(package.manifest.get("name") or "")
    if not AUTHOR_PATTERN.match(author):
        yield f"manifest author {author!r} does not match {AUTHOR_PATTERN.pattern} (the daemon refuses it)"
    elif any(word in author for word in FORBIDDEN_AUTHOR_WORDS):
        yield f"manifest author {author!r} must not contain 'dify' or 'langgenius' (Marketplace)"
    if not NAME_PATTERN.match(name):
        yield f"manifest name {name!r} does not match {NAME_PATTERN.pattern} (the daemon refuses it)"


@check
def marketplace_links(package: Package) -> Iterator[str]:
    privacy = package.manifest.get("privacy")
    if not package.has("PRIVACY.md"):
        yield "PRIVACY.md is not in the package (Marketplace)"
    if not privacy:
        yield "manifest privacy is missing: point it at PRIVACY.md (Marketplace)"
    elif package.has(str(privacy)):
        if not _real_policy(package.text(str(privacy))):
            yield f"{privacy} must be a real privacy policy (at least {MIN_PRIVACY_POLICY_CHARS} characters, no placeholders)"
    elif privacy != "PRIVACY.md":
        yield f"manifest privacy {privacy!r} is not in the package"
    repo = str(package.manifest.get("repo") or "")
    if not SOURCE_REPOSITORY.fullmatch(repo):
        yield f"manifest repo must be the URL of the source repository on a known forge (Marketplace), got {repo!r}"
    contact = package.manifest.get("contact")
    if contact and not EMAIL.match(str(contact)):
        yield f"manifest contact must be an email address (Marketplace), got {contact!r}"


def _real_policy(text: str) -> bool:
    placeholder = re.search(r"\b(TODO|TBD|lorem ipsum)\b|<[^>]*>|please fill in", text, re.IGNORECASE)
    return len(text.strip()) >= MIN_PRIVACY_POLICY_CHARS and not placeholder


@check
def readme(package: Package) -> Iterator[str]:
    if not package.has("README.md"):
        yield "README.md is not in the package (Marketplace)"
        return
    text = package.text("README.md")
    if not SOURCE_REPOSITORY.search(text):
        yield "README.md must link a source repository (Marketplace)"
    cjk = len(CJK.findall(CODE_FENCE.sub("", text)))
    if cjk:
        yield f"README.md must be in English: {cjk} CJK characters outside code blocks (translations go in readme/README_<lang>.md)"


_LEFTOVERS: list[tuple[Callable[[PurePosixPath], bool], str]] = [
    (lambda path: path.name == ".env" or path.name.startswith(".env.") and path.name != ".env.example",
     "a .env file (secrets)"),
    (lambda path: ".git" in path.parts, "git metadata"),
    (lambda path: any(part in (".venv", "venv", "env") for part in path.parts[:-1]) or path.name == "pyvenv.cfg",
     "a virtual environment"),
    (lambda path: "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo"), "Python bytecode"),
    (lambda path: path.suffix == ".log" or "logs" in path.parts[:-1], "a log file"),
    (lambda path: bool({".idea", ".vscode", "node_modules", ".pytest_cache", ".mypy_cache", ".ruff_cache"} & set(path.parts)),
     "an editor or tool folder"),
    (lambda path: path.suffix in (".pem", ".key"), "a private key or certificate"),
    (lambda path: path.suffix in (".swp", ".swo", ".bak", ".orig") or path.name.endswith("~") or path.name == ".DS_Store",
     "an editor or system leftover"),
]  # fmt: skip


@check
def leftovers(package: Package) -> Iterator[str]:
    for name in package.names:
        reason = next((what for matches, what in _LEFTOVERS if matches(PurePosixPath(name))), None)
        if reason:
            yield f"{name} is {reason} and must not ship: add it to .difyignore"


@check
def file_count(package: Package) -> Iterator[str]:
    if len(package.names) > MAX_FILES:
        yield f"the package holds {len(package.names)} files, more than the Marketplace's {MAX_FILES}"


@check
def requirements(package: Package) -> Iterator[str]:
    if not package.has("requirements.txt"):
        yield "requirements.txt is not in the package"
        return
    if package.has("pyproject.toml"):
        yield "both requirements.txt and pyproject.toml ship; the daemon prefers pyproject.toml: keep one"
    sdk_seen = False
    for number, raw in enumerate(package.text("requirements.txt").splitlines(), start=1):
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


@check
def credential_fields_set_required(package: Package) -> Iterator[str]:
    for path in (package.manifest.get("plugins") or {}).get("models") or []:
        if not package.has(str(path)):
            continue  # the CLI refuses a missing provider file
        provider = yaml.safe_load(package.text(str(path))) or {}
        for schema in ("provider_credential_schema", "model_credential_schema"):
            for form in ((provider.get(schema) or {}).get("credential_form_schemas")) or []:
                if "required" not in form:
                    yield f"{path}: {schema} field {form.get('variable')!r} must set `required` (the SDK and the daemon default differently)"

"""Every error message the plugin raises has a row in the README's troubleshooting tables.

The messages are read from the code: each call of an error class with a message written
in place. A message is documented when the opening words of its first phrase (the text
before its first placeholder, or the first longer literal part) appear in the tables.
Messages assembled elsewhere (the status table's fallbacks, connection reasons) are
documented by hand.
"""

import ast
import re

import pytest

from tests.runtime.harness import REPO_ROOT

ERROR_CLASSES = {
    "InvokeError", "InvokeBadRequestError", "InvokeServerUnavailableError", "InvokeConnectionError",
    "InvokeAuthorizationError", "InvokeRateLimitError", "CredentialsError", "CredentialsValidateFailedError",
}  # fmt: skip
OPENING_WORDS = 3


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9_]+", text.lower())


def literal_parts(node: ast.expr) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [part.value for part in node.values if isinstance(part, ast.Constant)]
    return []


def opening(parts: list[str]) -> str | None:
    """The words a reader recognises the message by, or None for a message with no words of its own."""
    phrase = next((part for part in parts if len(words(part)) >= OPENING_WORDS), None)
    if phrase is None:
        phrase = max(parts, key=lambda part: len(words(part)), default="")
    found = words(phrase)[:OPENING_WORDS]
    return " ".join(found) if len(found) >= 2 else None


def raised_messages() -> list[tuple[str, str]]:
    messages = []
    for path in sorted((REPO_ROOT / "models").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ERROR_CLASSES and node.args:
                text = opening(literal_parts(node.args[0]))
                if text:
                    messages.append((f"{path.relative_to(REPO_ROOT)}:{node.lineno}", text))
    return messages


def troubleshooting_words() -> str:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Troubleshooting\n", 1)[1].split("\n## ", 1)[0]
    return " " + " ".join(words(section)) + " "


MESSAGES = raised_messages()


def test_the_code_is_read():
    assert len(MESSAGES) >= 30, MESSAGES


@pytest.mark.parametrize(("where", "message"), MESSAGES, ids=[where for where, _ in MESSAGES])
def test_the_message_has_a_troubleshooting_row(where, message):
    assert f" {message} " in troubleshooting_words(), f"{where}: no README troubleshooting row for '{message} …'"

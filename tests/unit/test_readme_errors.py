"""Every message the plugin raises has a row in the README's troubleshooting tables, and
every row quotes a message the plugin raises.

Messages are read from the code: every error it constructs (Dify's classes,
`CredentialsError`, and `XinferenceError` with its headline, its own detail and hint)
with the text written in place; a placeholder stands for any words. A row quotes a
message (in backticks, `…` for any words) when the quote, word by word, can be the start
of the message, or any part of it for a quote that starts with `…` (a placeholder stands
for the words up to the next word of the message's own that the quote says). A row covers a
message when it quotes it down to the message's third word of its own (all of them when
it has fewer). A few texts are added to messages outside those calls; they are listed
here by hand and checked to be in the code.
"""

import ast
import functools
import re

import pytest

from tests.runtime.harness import REPO_ROOT

ERROR_CLASSES = {
    "InvokeError", "InvokeBadRequestError", "InvokeServerUnavailableError", "InvokeConnectionError",
    "InvokeAuthorizationError", "InvokeRateLimitError", "CredentialsError", "CredentialsValidateFailedError",
}  # fmt: skip
# Calls whose first argument is the message they pass on.
TEXT_STEPS = {"redact", "shorten", "str"}
# Texts added to messages outside an error's construction: (file, the text as a row quotes it).
ADDED_ELSEWHERE = [("models/common/errors.py", "… (reported mid-stream)")]
ANY = None  # a placeholder: any words
Words = tuple[str | None, ...]


def words(text: str) -> list[str | None]:
    return [None if word == "…" else word for word in re.findall(r"[a-z0-9_]+|…", text.lower())]


class Messages(ast.NodeVisitor):
    """The messages of one module, as words and placeholders."""

    def __init__(self, tree: ast.Module) -> None:
        self.constants = {
            target.id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        self.found: list[tuple[int, Words]] = []
        self.visit(tree)

    def visit_Call(self, node: ast.Call) -> None:
        name = getattr(node.func, "id", None)
        if name == "XinferenceError" and len(node.args) >= 2:
            parts = [self.text(node.args[1])]
            if len(node.args) >= 3:
                parts.append(self.text(node.args[2]))
            parts += [self.text(keyword.value) for keyword in node.keywords if keyword.arg == "hint"]
            self.found.append((node.lineno, tuple(word for part in parts for word in part)))
        elif name in ERROR_CLASSES and node.args:
            self.found.append((node.lineno, tuple(self.text(node.args[0]))))
        self.generic_visit(node)

    def text(self, node: ast.expr) -> list[str | None]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return words(node.value)
        if isinstance(node, ast.Name) and node.id in self.constants:
            return words(self.constants[node.id])
        if isinstance(node, ast.JoinedStr):
            return [word for part in node.values for word in self.text(part)]
        if isinstance(node, ast.FormattedValue):
            return self.text(node.value)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in TEXT_STEPS and node.args:
            return self.text(node.args[0])
        return [ANY]


def own_words(message: Words) -> int:
    return sum(word is not ANY for word in message)


def raised_messages() -> dict[str, Words]:
    messages = {}
    for path in sorted((REPO_ROOT / "models").rglob("*.py")):
        where = path.relative_to(REPO_ROOT)
        for line, message in Messages(ast.parse(path.read_text(encoding="utf-8"))).found:
            if own_words(message) >= 2:  # `InvokeBadRequestError(str(exc))` passes another message on
                messages[f"{where}:{line}"] = message
    for file, text in ADDED_ELSEWHERE:
        messages[f"{file} (by hand)"] = tuple(words(text))
    return messages


def troubleshooting_quotes() -> dict[str, Words]:
    """The quotes in the first column of the rows about saving and using a model."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Troubleshooting\n", 1)[1].split("\n## ", 1)[0]
    rows = section.split("\n### Installing\n", 1)[0]
    quotes = {}
    for row in rows.splitlines():
        if row.startswith("| `"):
            first_column = row.split(" | ", 1)[0]
            for quote in re.findall(r"`([^`]+)`", first_column):
                quotes[quote] = tuple(words(quote))
    return quotes


@functools.cache
def matched_words(quote: Words, message: Words, i: int = 0, j: int = 0) -> int:
    """How many of the message's own words the quote (from word i) says, read from the message's word j;
    -1 when the quote cannot be read there."""
    if i == len(quote):
        return 0
    if quote[i] is ANY:
        skip = matched_words(quote, message, i + 1, j)
        return max(skip, matched_words(quote, message, i, j + 1)) if j < len(message) else skip
    if j == len(message):
        return -1
    if message[j] is ANY:
        # A placeholder stands for words up to the next word of the message's own the quote says.
        if j + 1 < len(message) and message[j + 1] == quote[i]:
            return matched_words(quote, message, i, j + 1)
        return max(matched_words(quote, message, i + 1, j), matched_words(quote, message, i, j + 1))
    if quote[i] != message[j]:
        return -1
    rest = matched_words(quote, message, i + 1, j + 1)
    return -1 if rest < 0 else rest + 1


MESSAGES = raised_messages()
QUOTES = troubleshooting_quotes()


def test_the_code_and_the_readme_are_read():
    assert len(MESSAGES) >= 50, MESSAGES
    assert len(QUOTES) >= 40, QUOTES


@pytest.mark.parametrize("where", sorted(MESSAGES))
def test_every_message_has_a_troubleshooting_row(where):
    message = MESSAGES[where]
    needed = min(3, own_words(message))
    shown = " ".join(word or "…" for word in message)
    assert any(matched_words(quote, message) >= needed for quote in QUOTES.values()), (
        f"{where}: no README troubleshooting row quotes '{shown}'"
    )


@pytest.mark.parametrize("quote", sorted(QUOTES))
def test_every_row_quotes_a_message_the_plugin_raises(quote):
    needed = min(2, own_words(QUOTES[quote]))
    assert any(matched_words(QUOTES[quote], message) >= needed for message in MESSAGES.values()), (
        f"README row `{quote}` quotes no message the plugin raises"
    )

"""Display steps for any text that leaves the plugin: first redact, then shorten.

In that order: shortening first could cut the API key and leave its start behind.
"""

MAX_DETAIL_CHARS = 1000
MIN_KEY_FRAGMENT = 8
REDACTED = "***"


def redact(text: str, secret: str | None) -> str:
    """`text` with the key and every piece of it of 8+ characters replaced by `***`."""
    if not secret or not text:
        return text
    if len(secret) < MIN_KEY_FRAGMENT:
        return text.replace(secret, REDACTED)
    pieces = {secret[start : start + MIN_KEY_FRAGMENT] for start in range(len(secret) - MIN_KEY_FRAGMENT + 1)}
    hidden = [False] * len(text)
    for start in range(len(text) - MIN_KEY_FRAGMENT + 1):
        if text[start : start + MIN_KEY_FRAGMENT] in pieces:
            hidden[start : start + MIN_KEY_FRAGMENT] = [True] * MIN_KEY_FRAGMENT
    if not any(hidden):
        return text
    kept: list[str] = []
    for position, character in enumerate(text):
        if not hidden[position]:
            kept.append(character)
        elif position == 0 or not hidden[position - 1]:
            kept.append(REDACTED)
    return "".join(kept)


def shorten(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    text = text.strip()
    if len(text) > limit:
        return text[:limit] + "…"
    return text

"""Server-sent events as Xinference frames them: the `data` of each event, in order."""

from collections.abc import Iterable, Iterator

from models.common.errors import Reason, XinferenceError

DONE = "[DONE]"
# No real event comes near this; a server sending endless bytes without a line break does.
MAX_EVENT_BYTES = 16 * 1024 * 1024


def sse_data(chunks: Iterable[bytes]) -> Iterator[str]:
    """The data of each event: `\\r\\n` framing, comment lines (`: ping`) skipped,
    events split across network chunks reassembled, a last event without its blank line kept."""
    pending = b""
    data_lines: list[str] = []
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        if len(pending) > MAX_EVENT_BYTES:
            raise XinferenceError(
                Reason.MALFORMED_ANSWER, f"Xinference sent a stream line longer than {MAX_EVENT_BYTES} bytes"
            )
        for raw_line in lines:
            line = raw_line.rstrip(b"\r")
            if not line:
                if data_lines:
                    yield "\n".join(data_lines)
                    data_lines = []
            elif line.startswith(b"data:"):
                data_lines.append(_text(line[5:]))
    last_line = pending.rstrip(b"\r")
    if last_line.startswith(b"data:"):
        data_lines.append(_text(last_line[5:]))
    if data_lines:
        yield "\n".join(data_lines)


def _text(data: bytes) -> str:
    # A server that breaks UTF-8 gets its bytes replaced, not the stream ended.
    return data.decode("utf-8", "replace").removeprefix(" ")

"""How many texts one Dify call may carry.

The SDK writes a call's whole answer (every vector) to the daemon as one stdout line, and
the daemon kills a plugin whose line is longer than its buffer. So `max_chunks`, the
number of texts Dify hands over per call, follows from the vector size.
"""

# The daemon's stdout line limit (`PLUGIN_RUNTIME_MAX_BUFFER_SIZE`, default 5 MiB).
DAEMON_LINE_LIMIT = 5_242_880
# Answers stay within this; the rest is headroom for the envelope and the usage.
LINE_BUDGET = 4 * 1024 * 1024
# The longest a value gets in the SDK's JSON, with its comma: vectors go out at float32
# precision (9 significant digits), at most 20 bytes, e.g. "-6438444810000000.0,"
# (typical embedding values take 12-15). Full doubles took up to 25.
BYTES_PER_VALUE = 20
BYTES_PER_VECTOR = 3  # "[", "]" and a comma
# When the description names no dimensions: as wide as the widest common models.
DEFAULT_DIMENSIONS = 4096


def max_chunks(dimensions: int | None, ceiling: int) -> int:
    """Texts per Dify call: at most `ceiling`, and never more than fit in one answer line."""
    width = dimensions if dimensions and dimensions > 0 else DEFAULT_DIMENSIONS
    fitting = LINE_BUDGET // (width * BYTES_PER_VALUE + BYTES_PER_VECTOR)
    return max(1, min(ceiling, fitting))

"""How many texts Dify may send in one embedding call, so that the answer fits the daemon.

The plugin answers a call with one JSON line on stdout, and the Dify plugin daemon kills
a plugin that writes a line longer than 5,242,880 bytes (`PLUGIN_RUNTIME_MAX_BUFFER_SIZE`,
"bufio.Scanner: token too long"). An answer is almost entirely its vectors, so the
number of texts per call (`max_chunks`) follows from the model's dimensions.
"""

DAEMON_LINE_LIMIT_BYTES = 5_242_880
# The vectors may fill half a line: the rest is headroom for the envelope and for
# daemons configured below the default.
LINE_BUDGET_BYTES = DAEMON_LINE_LIMIT_BYTES // 2
# The longest a value gets in the answer: a float64 in its shortest round-trip form
# ("-0.0123456789012345678", "-1.234567890123456e-05") plus its comma; ~21 on average.
BYTES_PER_VALUE = 24
# Assumed when a model reports no `dimensions`: the widest common embedding models.
DIMENSIONS_WHEN_UNKNOWN = 4096


def max_chunks(dimensions: int | None, wanted: int) -> int:
    """`wanted` texts per call, fewer when their vectors would not fit one answer line."""
    width = dimensions if dimensions and dimensions > 0 else DIMENSIONS_WHEN_UNKNOWN
    fitting = LINE_BUDGET_BYTES // (width * BYTES_PER_VALUE)
    return max(1, min(wanted, fitting))

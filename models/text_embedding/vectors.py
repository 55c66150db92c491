"""Vectors as they travel: base64 float32 from Xinference, short decimals to Dify.

Xinference from 4.0 on answers `encoding_format: "base64"` with each vector packed as
little-endian float32 (what every engine computes in), a quarter of the JSON numbers'
size. Older servers ignore the field and send JSON numbers, so both shapes are read.

Towards Dify, a float32 value needs 9 significant digits to come back exactly; the
17-digit doubles Python would print carry nothing more and make the answer line (which
the daemon caps) ~1.6× longer.
"""

import base64
import binascii
import sys
from array import array
from functools import lru_cache

from dify_plugin.errors.model import InvokeServerUnavailableError

FLOAT32_DIGITS = 9


def float32_vector(encoded: list[float] | str) -> list[float]:
    """One vector from the wire (base64 float32 or JSON numbers), at float32 precision."""
    values = _unpack(encoded) if isinstance(encoded, str) else encoded
    return _shortest(values)


def _unpack(encoded: str) -> list[float]:
    try:
        packed = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvokeServerUnavailableError(
            f"Xinference sent an embedding that is not base64: {encoded[:80]!r}"
        ) from None
    if len(packed) % 4:
        raise InvokeServerUnavailableError(
            f"Xinference sent a base64 embedding of {len(packed)} bytes, not whole float32 values"
        )
    values = array("f", packed)
    if sys.byteorder == "big":
        values.byteswap()
    return values.tolist()


def _shortest(values: list[float]) -> list[float]:
    # One %-format for the whole vector, then one parse per value: the fastest way in
    # pure Python to get doubles whose shortest repr is the 9-digit decimal.
    if not values:
        return []
    return list(map(float, (_format_of(len(values)) % tuple(values)).split()))


@lru_cache(maxsize=16)
def _format_of(width: int) -> str:
    return f"%.{FLOAT32_DIGITS}g " * width

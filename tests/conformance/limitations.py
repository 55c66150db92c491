"""Family × shape pairs no client can fix: the template or the server refuses or drops them.

Each reason says why, so it can be reported upstream. The tier fails when a pair listed here
passes again (the entry is stale) or when a pair not listed here fails.
"""

LIMITATIONS: dict[tuple[str, str], str] = {}

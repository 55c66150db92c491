"""When to send a request again, and after how long: one pure decision.

Only where repeating cannot do harm:
- a reused keep-alive connection died while idle (the request never reached the model):
  once, at once, on a fresh connection, whatever `max_retries` says;
- the connection failed before anything was sent (refused, connect timeout): back off
  0.25 s, 0.5 s, 1 s, … up to 4 s, each shortened by a random share of up to a quarter
  (so the calls a server restart failed together do not all come back in the same
  instant, as openai-python does it), at most `max_retries` times;
- a 503 that says when to come back (`Retry-After`, capped at 10 s), at most `max_retries` times.
Never a wait that would end past the call's deadline.
"""

import math
from dataclasses import dataclass

import requests
import urllib3.exceptions

from models.common.transport import StaleConnectionError, causes

BACKOFF_START = 0.25
BACKOFF_CAP = 4.0
MAX_JITTER = 0.25  # the share of a back-off that chance may take off
MAX_RETRY_AFTER_WAIT = 10.0


@dataclass(frozen=True)
class Attempt:
    """What the call has already spent on retries."""

    retries: int = 0
    fresh_connection_tried: bool = False

    def after(self, failure: BaseException | requests.Response) -> "Attempt":
        if isinstance(failure, StaleConnectionError):
            return Attempt(self.retries, fresh_connection_tried=True)
        return Attempt(self.retries + 1, self.fresh_connection_tried)


def retry_delay(
    attempt: Attempt, failure: BaseException | requests.Response, *, max_retries: int, time_left: float, chance: float
) -> float | None:
    """Seconds to wait before trying again, or None to stop and report `failure`.

    `chance` is a random draw from [0, 1): the caller's, so that the decision stays a pure function.
    """
    if isinstance(failure, StaleConnectionError):
        delay: float | None = None if attempt.fresh_connection_tried else 0.0
    elif attempt.retries >= max_retries:
        return None
    elif isinstance(failure, requests.Response):
        delay = retry_after(failure)
    elif nothing_was_sent(failure):
        delay = min(BACKOFF_START * 2**attempt.retries, BACKOFF_CAP) * (1 - MAX_JITTER * chance)
    else:
        delay = None
    if delay is None or delay >= time_left:
        return None
    return delay


def retry_after(response: requests.Response) -> float | None:
    """The wait a 503 asks for, in seconds (capped), or None when it names none."""
    if response.status_code != 503:
        return None
    try:
        wait = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
    if not math.isfinite(wait):
        return None
    return min(max(wait, 0.0), MAX_RETRY_AFTER_WAIT)


def nothing_was_sent(exc: BaseException) -> bool:
    return any(
        isinstance(cause, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError))
        for cause in causes(exc)
    )

"""Bounded concurrency on one executor shared by every model type and every request.

The SDK builds a model object per request, so a pool per call would leak threads;
this module keeps one pool for the process and bounds each call's share of it.
"""

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")

MAX_POOL_THREADS = 32
_executor = ThreadPoolExecutor(max_workers=MAX_POOL_THREADS, thread_name_prefix="xinference")


def ordered_map(
    work: Callable[[_Item], _Result], items: Iterable[_Item], concurrency: int
) -> Iterator[_Result]:
    """Yields `work(item)` for each item in input order, at most `concurrency` running at once.

    The first failure cancels what has not started and is raised as it was.
    """
    window: deque[Future[_Result]] = deque()
    pending = iter(items)
    try:
        for item in pending:
            window.append(_executor.submit(work, item))
            if len(window) >= max(1, concurrency):
                yield window.popleft().result()
        while window:
            yield window.popleft().result()
    finally:
        for future in window:
            future.cancel()

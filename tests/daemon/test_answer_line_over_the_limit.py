"""What the real daemon does with an answer line over its limit, the failure that
`max_chunks` now prevents: it kills the plugin and the caller gets no answer at all.

1,024 texts at 384 dimensions, what Dify sent when `max_chunks` was a fixed 1,024, is one
~8 MB line. The daemon restarts the plugin it killed; the test waits for that, so the
tests after it, in any order, find the plugin serving again.
"""

import time

import pytest
import requests

from tests.daemon.conftest import stub_credentials

NO_ANSWER_WAIT = 20.0  # the daemon itself would hold the request for PLUGIN_MAX_EXECUTION_TIMEOUT (600 s)
RESTART_TIMEOUT = 180.0
KILLED = "plugin subprocess killed after stdout closed"


@pytest.fixture
def plugin_restarted_afterwards(call_with_timeout, stub):
    """Waits, after the test, until the plugin the daemon killed answers again."""
    yield
    started = time.monotonic()
    while True:
        try:
            if call_with_timeout(10.0)("model/schema", "text-embedding", stub_credentials(stub, "stub-embed-384")).ok:
                break
        except requests.exceptions.RequestException:
            pass
        if time.monotonic() - started > RESTART_TIMEOUT:
            pytest.fail(f"the daemon did not bring the killed plugin back within {RESTART_TIMEOUT:g} s")
        time.sleep(1)  # polling a restart the daemon schedules itself; nothing to wait on instead
    print(f"\nthe plugin answered again {time.monotonic() - started:.0f} s after the kill")


def test_an_answer_line_over_the_limit_kills_the_plugin_and_leaves_dify_without_an_answer(
    call_with_timeout, stub, daemon_stack, plugin_restarted_afterwards
):
    log = daemon_stack.daemon.log
    kills_before = log.read_text(errors="replace").count(KILLED)
    texts = [f"chunk {number}" for number in range(1024)]

    started = time.monotonic()
    with pytest.raises((requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError)):
        call_with_timeout(NO_ANSWER_WAIT)("text_embedding/invoke", "text-embedding",
                                          stub_credentials(stub, "stub-embed-384"), texts=texts, input_type="document")  # fmt: skip

    print(f"\nno answer within {time.monotonic() - started:.0f} s")
    assert log.read_text(errors="replace").count(KILLED) == kills_before + 1

"""What the real daemon does with an answer line over its limit, the failure that
`max_chunks` now prevents: it kills the plugin and the caller gets no answer at all.

Runs late in the tier (the plugin is restarted by the daemon afterwards): 1,024 texts at
384 dimensions, what Dify sent when `max_chunks` was a fixed 1,024, is one ~8 MB line.
"""

import time

import pytest
import requests

from tests.daemon.conftest import stub_credentials

NO_ANSWER_WAIT = 20.0  # the daemon itself would hold the request for PLUGIN_MAX_EXECUTION_TIMEOUT (600 s)


def test_an_answer_line_over_the_limit_kills_the_plugin_and_leaves_dify_without_an_answer(call_with_timeout, stub, daemon_stack):
    log = daemon_stack.daemon.log
    kills_before = log.read_text(errors="replace").count("plugin subprocess killed after stdout closed")
    texts = [f"chunk {number}" for number in range(1024)]

    started = time.monotonic()
    with pytest.raises((requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError)):
        call_with_timeout(NO_ANSWER_WAIT)("text_embedding/invoke", "text-embedding",
                                          stub_credentials(stub, "stub-embed-384"), texts=texts, input_type="document")  # fmt: skip

    print(f"\nno answer within {time.monotonic() - started:.0f} s")
    assert log.read_text(errors="replace").count("plugin subprocess killed after stdout closed") == kills_before + 1

"""The plugin keeps its answer lines under what the daemon reads: a stdout line over
5,242,880 bytes gets a plugin killed (the daemon tier shows the real daemon doing it).
An embedding answer is one line holding every vector of the call; the `max_chunks` the
schema tells Dify keeps it well under, on the process's real stdout."""

import json

import pytest

from tests.daemon.stub_models import ModelsStub
from tests.runtime.conftest import STUB_API_KEY
from tests.runtime.harness import DAEMON_LINE_LIMIT_BYTES, PluginProcess


@pytest.fixture(scope="module")
def models_stub():
    server = ModelsStub(api_key=STUB_API_KEY)
    yield server
    server.close()


@pytest.fixture
def own_plugin(target):
    """A process of its own: its longest line is this test's."""
    with PluginProcess(target.root, target.python) as process:
        yield process


def test_a_call_of_max_chunks_texts_stays_well_under_the_daemons_line_limit(own_plugin, models_stub):
    plugin = own_plugin
    credentials = {"server_url": models_stub.url, "model_uid": "stub-embed-384", "api_key": STUB_API_KEY, "max_retries": "0"}
    schema = plugin.request("get_ai_model_schemas", "text-embedding", "m", credentials)
    max_chunks = schema.last["model_schema"]["model_properties"]["max_chunks"]
    texts = [f"chunk {number}" for number in range(max_chunks)]

    result = plugin.request("invoke_text_embedding", "text-embedding", "m", credentials, texts=texts, input_type="document")

    assert result.ok, result.error
    assert len(result.last["embeddings"]) == max_chunks
    # The answer's line holds every vector; it is the longest the process wrote, and well under the limit.
    assert len(json.dumps(result.last["embeddings"], separators=(",", ":"))) < plugin.longest_line_bytes < 0.6 * DAEMON_LINE_LIMIT_BYTES

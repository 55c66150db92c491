"""Where the stand-in follows the real daemon (the daemon tier shows the daemon doing it):
a stdout line over 5,242,880 bytes gets the plugin killed and its session never ends, a
call of the `max_chunks` texts Dify sends stays well under it, and requests the daemon's
Go structs refuse never reach the plugin."""

import pytest

from tests.daemon.stub_models import ModelsStub
from tests.runtime.conftest import STUB_API_KEY
from tests.runtime.harness import DAEMON_LINE_LIMIT_BYTES, HarnessError, PluginProcess, request_payload


@pytest.fixture(scope="module")
def models_stub():
    server = ModelsStub(api_key=STUB_API_KEY)
    yield server
    server.close()


@pytest.fixture
def own_plugin(target):
    """A plugin process of its own: the first test gets it killed."""
    with PluginProcess(target.root, target.python) as process:
        yield process


def embed(plugin, stub, count: int):
    credentials = {"server_url": stub.url, "model_uid": "stub-embed-384", "api_key": STUB_API_KEY, "max_retries": "0"}
    texts = [f"chunk {number}" for number in range(count)]
    return plugin.request("invoke_text_embedding", "text-embedding", "m", credentials, texts=texts, input_type="document")


def max_chunks(plugin, stub) -> int:
    credentials = {"server_url": stub.url, "model_uid": "stub-embed-384", "api_key": STUB_API_KEY}
    schema = plugin.request("get_ai_model_schemas", "text-embedding", "m", credentials)
    return schema.last["model_schema"]["model_properties"]["max_chunks"]


def test_a_line_over_the_daemons_limit_kills_the_plugin(own_plugin, models_stub):
    with pytest.raises(HarnessError, match="over PLUGIN_RUNTIME_MAX_BUFFER_SIZE"):
        embed(own_plugin, models_stub, 1024)  # what Dify sent when max_chunks was a fixed 1,024

    assert own_plugin.process.wait(timeout=10) is not None
    assert own_plugin.longest_line_bytes > DAEMON_LINE_LIMIT_BYTES


def test_a_call_of_max_chunks_texts_stays_well_under_it(own_plugin, models_stub):
    result = embed(own_plugin, models_stub, max_chunks(own_plugin, models_stub))

    assert result.ok, result.error
    assert own_plugin.longest_line_bytes < 0.6 * DAEMON_LINE_LIMIT_BYTES


@pytest.mark.parametrize(
    ("action", "model_type", "fields", "missing"),
    [
        ("invoke_tts", "tts", {"content_text": "Hello", "voice": "", "tenant_id": "t"}, "voice"),
        ("invoke_rerank", "rerank", {"query": "", "docs": ["a"], "score_threshold": None, "top_n": None}, "query"),
        ("invoke_speech2text", "speech2text", {"file": ""}, "file"),
    ],
)
def test_requests_the_daemon_refuses_are_refused(action, model_type, fields, missing):
    with pytest.raises(ValueError, match=f"the daemon refuses {action} without '{missing}'"):
        request_payload(action, model_type, "m", {}, **fields)

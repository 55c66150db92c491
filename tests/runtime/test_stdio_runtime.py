"""The plugin run as Dify's local runtime runs it, against a stub Xinference on loopback.

Every test goes through the real process: stdin requests, stdout session events, the
SDK's routing and error mapping, and our model code behind it.
"""

import json
import re

import yaml

from tests.runtime.conftest import STUB_API_KEY
from tests.runtime.harness import PluginProcess, llm_text, unused_port
from tests.runtime.stub_xinference import (
    ANSWER_PIECES,
    BROKEN_STREAM_UID,
    CONTEXT_LENGTH,
    EMBEDDING_UID,
    USAGE,
)

PROMPT = [{"role": "user", "content": "Say hello."}]


def invoke_llm(plugin, credentials, stream=True, **overrides):
    return plugin.request(
        "invoke_llm",
        "llm",
        "my-chat",
        credentials,
        prompt_messages=overrides.pop("prompt_messages", PROMPT),
        model_parameters=overrides.pop("model_parameters", {"temperature": 0.1}),
        tools=None,
        stop=None,
        stream=stream,
    )


def test_the_plugin_starts_as_the_daemon_expects(plugin, target):
    manifest = yaml.safe_load((target.root / "manifest.yaml").read_text())
    assert plugin.manifest["name"] == manifest["name"] == "xinference"
    assert plugin.manifest["version"] == manifest["version"]
    assert plugin.heartbeat.is_set()
    assert any(log.get("message") == "Installed model: xinference" for log in plugin.logs)


def test_model_schema_reports_context_size_and_features(plugin, credentials):
    result = plugin.request("get_ai_model_schemas", "llm", "my-chat", credentials)

    assert result.ok, result.error
    schema = result.last["model_schema"]
    assert schema["model"] == "my-chat"
    assert schema["model_properties"]["context_size"] == CONTEXT_LENGTH
    assert schema["model_properties"]["mode"] == "chat"
    assert {"tool-call", "multi-tool-call", "stream-tool-call"} <= set(schema["features"])
    rule_names = {rule["name"] for rule in schema["parameter_rules"]}
    assert {"temperature", "top_p", "max_tokens"} <= rule_names


def test_streaming_chat_arrives_in_order_with_usage_on_the_last_chunk(plugin, credentials):
    result = invoke_llm(plugin, credentials, stream=True)

    assert result.ok, result.error
    texts = [chunk["delta"]["message"]["content"] for chunk in result.chunks]
    assert [text for text in texts if text] == ANSWER_PIECES
    assert [chunk["delta"]["index"] for chunk in result.chunks] == list(range(len(result.chunks)))
    *earlier, last = result.chunks
    assert all(chunk["delta"].get("usage") is None for chunk in earlier)
    assert last["delta"]["finish_reason"] == "stop"
    assert last["delta"]["usage"]["prompt_tokens"] == USAGE["prompt_tokens"]
    assert last["delta"]["usage"]["completion_tokens"] == USAGE["completion_tokens"]


def test_blocking_chat_arrives_as_one_chunk_with_usage(plugin, credentials):
    result = invoke_llm(plugin, credentials, stream=False)

    assert result.ok, result.error
    assert len(result.chunks) == 1
    assert llm_text(result.chunks) == "".join(ANSWER_PIECES)
    assert result.last["delta"]["usage"]["total_tokens"] == USAGE["total_tokens"]


def test_token_count_grows_with_the_prompt(plugin, credentials):
    def count(text):
        result = plugin.request(
            "get_llm_num_tokens",
            "llm",
            "my-chat",
            credentials,
            prompt_messages=[{"role": "user", "content": text}],
            tools=None,
        )
        assert result.ok, result.error
        return result.last["num_tokens"]

    short, long = count("Hi"), count("Tell me a long story about the sea. " * 20)
    assert 0 < short < long


def test_validating_good_credentials_succeeds(plugin, credentials):
    result = plugin.request("validate_model_credentials", "llm", "my-chat", credentials)

    assert result.ok, result.error
    assert result.last["result"] is True


def test_a_wrong_api_key_is_an_authorization_error(plugin, credentials):
    result = invoke_llm(plugin, {**credentials, "api_key": "xf-" + "0" * 48})

    assert result.error["error_type"] == "InvokeAuthorizationError"
    assert "401" in result.error["message"]
    assert "Could not validate credentials" in result.error["message"]


def test_a_closed_port_is_a_connection_error_naming_the_url(plugin, credentials):
    server_url = f"http://127.0.0.1:{unused_port()}"
    result = invoke_llm(plugin, {**credentials, "server_url": server_url})

    assert result.error["error_type"] == "InvokeConnectionError"
    assert server_url in result.error["message"]
    assert "refused" in result.error["message"]


def test_validating_an_unknown_uid_fails_and_lists_the_running_models(plugin, credentials):
    result = plugin.request(
        "validate_model_credentials", "llm", "my-chat", {**credentials, "model_uid": "no-such-model"}
    )

    assert result.error["error_type"] == "CredentialsValidateFailedError"
    assert "no-such-model" in result.error["message"]
    assert "stub-chat" in result.error["message"]


def test_an_embedding_model_added_as_llm_is_a_bad_request(plugin, credentials):
    result = invoke_llm(plugin, {**credentials, "model_uid": EMBEDDING_UID})

    assert result.error["error_type"] == "InvokeBadRequestError"
    assert "embedding" in result.error["message"]
    assert "LLM" in result.error["message"]


def test_an_error_in_the_middle_of_a_stream_ends_the_session_with_that_error(plugin, credentials):
    result = invoke_llm(plugin, {**credentials, "model_uid": BROKEN_STREAM_UID})

    assert llm_text(result.chunks) == "".join(ANSWER_PIECES)  # what came before still arrives
    assert result.error["error_type"] == "InvokeRateLimitError"
    assert "Rate limit reached" in result.error["message"]


def test_the_api_key_never_appears_in_the_plugin_output(target, stub, credentials):
    wrong_key = "xf-" + "7" * 48
    with PluginProcess(target.root, target.python) as plugin:
        results = [
            invoke_llm(plugin, credentials, stream=True),
            invoke_llm(plugin, credentials, stream=False),
            invoke_llm(plugin, {**credentials, "api_key": wrong_key}),
            invoke_llm(plugin, {**credentials, "model_uid": BROKEN_STREAM_UID}),
            plugin.request("validate_model_credentials", "llm", "m", {**credentials, "api_key": wrong_key}),
            plugin.request("validate_model_credentials", "llm", "m", {**credentials, "model_uid": "x"}),
            plugin.request("validate_model_credentials", "llm", "m", credentials),
        ]
    assert [result.ok for result in results] == [True, True, False, False, False, False, True]
    # The key reached the server, so the plugin did hold it ...
    assert f"Bearer {STUB_API_KEY}" in {request["headers"].get("Authorization") for request in stub.requests}
    # ... but no output line carries it, nor the wrong one.
    output = _without_echoed_credentials(plugin.stdout.lines) + plugin.stderr.text
    assert STUB_API_KEY not in output
    assert wrong_key not in output
    assert not re.search(r"Bearer\s+xf-", output)


def _without_echoed_credentials(lines: list[str]) -> str:
    """The stdout text, minus the one place the protocol itself returns credentials.

    A successful `validate_model_credentials` answers `{"result": true, "credentials": {...}}`
    (the SDK echoes them so Dify can store what validation added); that is the daemon's
    own data going back to it, not something the plugin logs.
    """
    kept = []
    for line in lines:
        try:
            message = json.loads(line)
            echoed = message["data"]["data"]["credentials"]
        except (ValueError, KeyError, TypeError):
            kept.append(line)
            continue
        assert isinstance(echoed, dict)
        del message["data"]["data"]["credentials"]
        kept.append(json.dumps(message))
    return "".join(kept)

"""Validation against a real Xinference server: each failure gets its own clear message."""

import socket

import pytest
from dify_plugin.errors.model import CredentialsValidateFailedError

from models.llm.llm import XinferenceLargeLanguageModel

pytestmark = pytest.mark.integration


def llm() -> XinferenceLargeLanguageModel:
    return XinferenceLargeLanguageModel(model_schemas=[])


def credentials(testbed: dict, **overrides) -> dict:
    return {
        "server_url": testbed["url"],
        "model_uid": testbed["uids"]["chat"],
        "api_key": testbed.get("api_key") or "",
        **overrides,
    }


def test_good_credentials_validate(testbed):
    llm().validate_credentials("tiny", credentials(testbed))


def test_wrong_uid_names_the_uid_and_lists_the_running_ones(testbed):
    with pytest.raises(CredentialsValidateFailedError) as raised:
        llm().validate_credentials("tiny", credentials(testbed, model_uid="no-such-model"))
    message = str(raised.value)
    assert "no-such-model" in message
    assert testbed["uids"]["chat"] in message and testbed["uids"]["embedding"] in message


def test_wrong_model_type_names_both_types(testbed):
    with pytest.raises(CredentialsValidateFailedError, match="embedding model on Xinference.*LLM"):
        llm().validate_credentials("tiny", credentials(testbed, model_uid=testbed["uids"]["embedding"]))


def test_closed_port_says_the_server_cannot_be_reached(testbed):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(CredentialsValidateFailedError, match="Cannot reach Xinference.*connection refused"):
        llm().validate_credentials("tiny", credentials(testbed, server_url=f"http://127.0.0.1:{port}", max_retries="1"))


def test_auth_server_wants_a_key_and_takes_the_good_one(testbed_with_auth):
    good = credentials(testbed_with_auth)
    assert good["api_key"].startswith(("xf-", "sk-"))
    llm().validate_credentials("tiny", good)
    with pytest.raises(CredentialsValidateFailedError, match="refused the credentials \\(401\\)") as missing:
        llm().validate_credentials("tiny", credentials(testbed_with_auth, api_key=""))
    with pytest.raises(CredentialsValidateFailedError, match="refused the credentials \\(401\\)") as bad:
        llm().validate_credentials("tiny", credentials(testbed_with_auth, api_key="xf-" + "0" * 48))
    assert "xf-" + "0" * 48 not in str(bad.value)
    assert good["api_key"] not in str(missing.value) + str(bad.value)

"""Query vs document through `python -m main` over stdio against the real testbed: the vectors
Dify gets, and the log line that tells an admin the model's prompt is in use."""

import struct

import pytest
import requests

pytestmark = pytest.mark.integration

TEXTS = ["What is the capital of France?", "Paris is the capital of France."]


def float32(values: list[float]) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def test_a_query_reaches_dify_embedded_with_the_query_prompt_and_the_daemon_is_told(plugin, testbed):
    if "embedding_prompts" not in testbed["uids"]:
        # scripts/testbed launches it on Xinference 4.x only: older sentence-transformers cannot load it.
        pytest.skip(f"no embedding model with prompts on this testbed (Xinference {testbed.get('xinference_version')})")
    uid = testbed["uids"]["embedding_prompts"]
    credentials = {"server_url": testbed["url"], "model_uid": uid, "api_key": testbed.get("api_key") or ""}

    result = plugin.request("invoke_text_embedding", "text-embedding", "tiny", credentials,
                            texts=TEXTS, input_type="query")

    assert result.ok, result.error
    headers = {"Authorization": f"Bearer {testbed['api_key']}"} if testbed.get("api_key") else {}
    direct = requests.post(testbed["url"] + "/v1/embeddings", headers=headers, timeout=120,
                           json={"model": uid, "input": TEXTS, "prompt_name": "query"}).json()
    expected = [float32(item["embedding"]) for item in sorted(direct["data"], key=lambda item: item["index"])]
    assert [float32(vector) for vector in result.last["embeddings"]] == expected
    assert any(
        entry.get("message") == f"Embedding model '{uid}' ({uid}): texts are sent with prompt_name='query'."
        for entry in plugin.logs
    )

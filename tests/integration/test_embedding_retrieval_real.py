"""Query vs document and float32 vectors against a real Xinference server (scripts/testbed).

`tiny-embed-prompts` is a tiny sentence-transformers model whose config names the prompts
`query` ("query: ") and `document` ("passage: ") (scripts/testbed_build_models.py);
`tiny-embed` is all-MiniLM-L6-v2, which has none.
"""

import base64
import struct

import pytest
import requests
from dify_plugin.entities.model import EmbeddingInputType, ModelPropertyKey

from models.common.errors import detail_of, from_status
from models.text_embedding import retrieval, text_embedding
from models.text_embedding.text_embedding import XinferenceTextEmbeddingModel

pytestmark = pytest.mark.integration

QUERY_PROMPT, DOCUMENT_PROMPT = "query: ", "passage: "  # as the testbed builds the model
TEXTS = ["What is the capital of France?", "Paris is the capital of France.", "Bananas are yellow."]


def credentials(testbed: dict, role: str) -> dict:
    return {"server_url": testbed["url"], "model_uid": testbed["uids"][role], "api_key": testbed.get("api_key") or ""}


def direct(testbed: dict, role: str, texts: list[str], **fields) -> list[bytes]:
    """The server's vectors for these texts, each as its float32 bytes."""
    headers = {"Authorization": f"Bearer {testbed['api_key']}"} if testbed.get("api_key") else {}
    body = {"model": testbed["uids"][role], "input": texts, **fields}
    response = requests.post(testbed["url"] + "/v1/embeddings", json=body, headers=headers, timeout=120)
    response.raise_for_status()
    return [float32(item["embedding"]) for item in sorted(response.json()["data"], key=lambda item: item["index"])]


def through_plugin(testbed: dict, role: str, texts: list[str], input_type: EmbeddingInputType) -> list[bytes]:
    result = XinferenceTextEmbeddingModel(model_schemas=[]).invoke(
        "tiny", credentials(testbed, role), texts, input_type=input_type
    )
    return [float32(vector) for vector in result.embeddings]


def float32(values: list[float]) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def skip_before(testbed: dict, major: int, why: str) -> None:
    version = testbed.get("xinference_version") or ""
    if version and int(version.split(".")[0]) < major:
        pytest.skip(f"Xinference {version} {why}")


@pytest.fixture(scope="module")
def prompts_model(testbed):
    if "embedding_prompts" not in testbed["uids"]:
        # scripts/testbed launches it on Xinference 4.x only: older sentence-transformers cannot load it.
        pytest.skip(f"no embedding model with prompts on this testbed (Xinference {testbed.get('xinference_version')})")
    return testbed


def test_a_query_is_embedded_with_the_models_query_prompt(prompts_model):
    ours = through_plugin(prompts_model, "embedding_prompts", TEXTS, EmbeddingInputType.QUERY)
    assert ours == direct(prompts_model, "embedding_prompts", TEXTS, prompt_name="query")
    # The prompt is the text the model's config names, put in front of each text.
    assert ours == direct(prompts_model, "embedding_prompts", [QUERY_PROMPT + text for text in TEXTS])
    assert ours != direct(prompts_model, "embedding_prompts", TEXTS)


def test_a_document_is_embedded_with_the_models_document_prompt(prompts_model):
    ours = through_plugin(prompts_model, "embedding_prompts", TEXTS, EmbeddingInputType.DOCUMENT)
    assert ours == direct(prompts_model, "embedding_prompts", TEXTS, prompt_name="document")
    assert ours == direct(prompts_model, "embedding_prompts", [DOCUMENT_PROMPT + text for text in TEXTS])
    assert ours != through_plugin(prompts_model, "embedding_prompts", TEXTS, EmbeddingInputType.QUERY)


def test_a_model_without_prompts_of_its_own_is_unaffected(testbed):
    # sentence-transformers 5 (Xinference 4.x) gives every model empty `query` and
    # `document` prompts when its config names none: asking for them changes nothing.
    plain = direct(testbed, "embedding", TEXTS)
    assert through_plugin(testbed, "embedding", TEXTS, EmbeddingInputType.QUERY) == plain
    assert through_plugin(testbed, "embedding", TEXTS, EmbeddingInputType.DOCUMENT) == plain


def test_a_prompt_the_model_lacks_is_learned_from_the_servers_answer_and_asked_once(testbed, monkeypatch):
    # The plugin asks for prompts only where the description names the sentence-transformers
    # engine, which it does from Xinference 3.x on.
    skip_before(testbed, 3, "describes no embedding engine, so the plugin sends no prompt")
    # A model the plugin takes for jina-embeddings-v3 (its name says so) whose config has
    # no `retrieval.query` prompt: MiniLM under that name. The server refuses the prompt.
    real_describe = text_embedding.XinferenceTextEmbeddingModel._checked_description

    def named_like_jina_v3(self, settings, **kwargs):
        return real_describe(self, settings, **kwargs).model_copy(update={"model_name": "jina-embeddings-v3"})

    monkeypatch.setattr(text_embedding.XinferenceTextEmbeddingModel, "_checked_description", named_like_jina_v3)
    headers = {"Authorization": f"Bearer {testbed['api_key']}"} if testbed.get("api_key") else {}
    refused = requests.post(testbed["url"] + "/v1/embeddings", headers=headers, timeout=60, json={
        "model": testbed["uids"]["embedding"], "input": ["x"], "prompt_name": "retrieval.query"})
    assert refused.status_code == 500
    assert from_status(refused.status_code, detail_of(refused.text), "").prompt_name == "retrieval.query"

    sent = []
    real_embed_batch = text_embedding._embed_batch

    def recording(client, uid, batch, options):
        sent.append(options.get("prompt_name"))
        return real_embed_batch(client, uid, batch, options)

    monkeypatch.setattr(text_embedding, "_embed_batch", recording)
    plain = direct(testbed, "embedding", TEXTS)
    for _ in range(2):
        assert through_plugin(testbed, "embedding", TEXTS, EmbeddingInputType.QUERY) == plain
    assert sent == ["retrieval.query", None, None]
    assert (testbed["url"], testbed["uids"]["embedding"], "jina-embeddings-v3", "retrieval.query") in retrieval._missing_prompts


def test_base64_vectors_are_the_same_float32_values(testbed):
    skip_before(testbed, 4, "ignores encoding_format: base64 and sends floats (the plugin reads both)")
    texts = [f"Sentence {n} about the weather." for n in range(5)]
    headers = {"Authorization": f"Bearer {testbed['api_key']}"} if testbed.get("api_key") else {}
    body = {"model": testbed["uids"]["embedding"], "input": texts, "encoding_format": "base64"}
    answer = requests.post(testbed["url"] + "/v1/embeddings", json=body, headers=headers, timeout=60).json()
    packed = [base64.b64decode(item["embedding"]) for item in sorted(answer["data"], key=lambda item: item["index"])]
    assert packed == direct(testbed, "embedding", texts)
    assert through_plugin(testbed, "embedding", texts, EmbeddingInputType.DOCUMENT) == packed


def test_max_chunks_follows_the_width_of_the_vectors(prompts_model):
    model = XinferenceTextEmbeddingModel(model_schemas=[])
    narrow = model.get_customizable_model_schema("tiny", credentials(prompts_model, "embedding"))
    wide = model.get_customizable_model_schema("tiny", credentials(prompts_model, "embedding_prompts"))
    # 384 and 1,024 dimensions: an answer line of at most 4 MiB either way.
    assert narrow.model_properties[ModelPropertyKey.MAX_CHUNKS] == 545
    assert wide.model_properties[ModelPropertyKey.MAX_CHUNKS] == 204

"""Embedding, rerank and speech-to-text against a real Xinference server (scripts/testbed),
compared with direct calls to the same server."""

import pytest
import requests
from dify_plugin.entities.model import ModelPropertyKey
from dify_plugin.errors.model import CredentialsValidateFailedError, InvokeBadRequestError

from models.rerank.rerank import XinferenceRerankModel
from models.speech2text.speech2text import XinferenceSpeech2TextModel
from models.text_embedding.text_embedding import XinferenceTextEmbeddingModel

pytestmark = pytest.mark.integration

DOCUMENTS = [
    "Paris is the capital of France.",
    "Bananas are yellow.",
    "The Eiffel Tower is in Paris.",
    "Berlin is the capital of Germany.",
    "Paris is the capital of France.",  # a duplicate keeps its own index
]
QUERY = "What is the capital of France?"


def credentials(testbed: dict, role: str, **extra) -> dict:
    return {
        "server_url": testbed["url"],
        "model_uid": testbed["uids"][role],
        "api_key": testbed.get("api_key") or "",
        **extra,
    }


def direct(testbed: dict, path: str, body: dict) -> dict:
    headers = {"Authorization": f"Bearer {testbed['api_key']}"} if testbed.get("api_key") else {}
    response = requests.post(testbed["url"] + path, json=body, headers=headers, timeout=120)
    response.raise_for_status()
    return response.json()


# ---- embedding ---------------------------------------------------------------------------


def test_vectors_equal_a_direct_call_in_order_across_several_batches(testbed):
    texts = [f"Sentence number {n} about {'cats' if n % 2 else 'the weather'}." for n in range(11)]
    model = XinferenceTextEmbeddingModel(model_schemas=[])
    result = model.invoke("tiny", credentials(testbed, "embedding", embedding_batch_size="3"), texts)
    server = direct(testbed, "/v1/embeddings", {"model": testbed["uids"]["embedding"], "input": texts})
    expected = [item["embedding"] for item in sorted(server["data"], key=lambda item: item["index"])]
    assert len(result.embeddings) == len(texts)
    for ours, theirs in zip(result.embeddings, expected, strict=True):
        assert ours == pytest.approx(theirs, abs=1e-5)
    assert result.usage.total_tokens > 0


def test_a_text_longer_than_the_context_is_truncated_not_rejected(testbed):
    model = XinferenceTextEmbeddingModel(model_schemas=[])
    long_text = "word " * 5000  # far beyond the model's 256 tokens
    result = model.invoke("tiny", credentials(testbed, "embedding"), [long_text, "short"])
    assert len(result.embeddings) == 2 and len(result.embeddings[0]) == 384


def test_embedding_schema_and_validation(testbed):
    model = XinferenceTextEmbeddingModel(model_schemas=[])
    schema = model.get_customizable_model_schema("tiny", credentials(testbed, "embedding", embedding_batch_size="8"))
    assert schema.model_properties[ModelPropertyKey.CONTEXT_SIZE] == 256
    assert schema.model_properties[ModelPropertyKey.MAX_CHUNKS] == 8 * 4  # four batches at once
    model.validate_credentials("tiny", credentials(testbed, "embedding"))
    with pytest.raises(CredentialsValidateFailedError, match="an LLM model on Xinference.*text embedding"):
        model.validate_credentials("tiny", credentials(testbed, "chat"))
    with pytest.raises(InvokeBadRequestError, match="rerank model on Xinference"):
        model.invoke("tiny", credentials(testbed, "rerank"), ["x"])


# ---- rerank ------------------------------------------------------------------------------


def test_rerank_order_and_scores_equal_a_direct_call(testbed):
    model = XinferenceRerankModel(model_schemas=[])
    result = model.invoke("tiny", credentials(testbed, "rerank"), QUERY, DOCUMENTS)
    server = direct(
        testbed, "/v1/rerank", {"model": testbed["uids"]["rerank"], "query": QUERY, "documents": DOCUMENTS}
    )
    assert [doc.index for doc in result.docs] == [item["index"] for item in server["results"]]
    assert [doc.score for doc in result.docs] == pytest.approx([item["relevance_score"] for item in server["results"]])
    assert [doc.text for doc in result.docs] == [DOCUMENTS[item["index"]] for item in server["results"]]
    assert sorted(doc.index for doc in result.docs) == list(range(len(DOCUMENTS)))


def test_rerank_top_n_and_score_threshold(testbed):
    model = XinferenceRerankModel(model_schemas=[])
    everything = model.invoke("tiny", credentials(testbed, "rerank"), QUERY, DOCUMENTS)
    top_two = model.invoke("tiny", credentials(testbed, "rerank"), QUERY, DOCUMENTS, top_n=2)
    assert [doc.index for doc in top_two.docs] == [doc.index for doc in everything.docs[:2]]
    middle = everything.docs[2].score
    above = model.invoke("tiny", credentials(testbed, "rerank"), QUERY, DOCUMENTS, score_threshold=middle)
    assert [doc.index for doc in above.docs] == [doc.index for doc in everything.docs if doc.score >= middle]
    assert len(model.invoke("tiny", credentials(testbed, "rerank"), QUERY, DOCUMENTS, top_n=50).docs) == len(DOCUMENTS)


def test_rerank_validation(testbed):
    model = XinferenceRerankModel(model_schemas=[])
    model.validate_credentials("tiny", credentials(testbed, "rerank"))
    with pytest.raises(CredentialsValidateFailedError, match="an embedding model on Xinference.*rerank"):
        model.validate_credentials("tiny", credentials(testbed, "embedding"))


# ---- speech-to-text ------------------------------------------------------------------------


def test_transcription_of_the_testbed_clip_equals_a_direct_call(testbed):
    clip = testbed["clip"]
    model = XinferenceSpeech2TextModel(model_schemas=[])
    model.validate_credentials("tiny", credentials(testbed, "speech2text"))
    with open(clip, "rb") as audio:
        text = model.invoke("tiny", credentials(testbed, "speech2text"), audio)
    with open(clip, "rb") as audio:
        server = requests.post(
            f"{testbed['url']}/v1/audio/transcriptions",
            data={"model": testbed["uids"]["speech2text"], "response_format": "json"},
            files={"file": ("clip.wav", audio)},
            headers={"Authorization": f"Bearer {testbed['api_key']}"} if testbed.get("api_key") else {},
            timeout=120,
        ).json()
    assert text == server["text"].strip()
    assert text == testbed["transcription"]

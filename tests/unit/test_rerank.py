"""Rerank models as Dify drives them, against Xinference answers in the contract's shapes."""

import base64
import json

import pytest
import responses
from dify_plugin.entities.model import ModelFeature, ModelType
from dify_plugin.entities.model.text_embedding import MultiModalContent, MultiModalContentType
from dify_plugin.errors.model import (
    InvokeServerUnavailableError,
)

from models.rerank.rerank import XinferenceRerankModel
from tests.unit.xinference import SERVER, UID, credentials, describe_rerank

DESCRIBE = f"{SERVER}/v1/models/{UID}"
RERANK = f"{SERVER}/v1/rerank"
JPEG = base64.b64encode(b"\xff\xd8\xff\xe0" + b"\x00" * 16).decode()


def reranker() -> XinferenceRerankModel:
    return XinferenceRerankModel(model_schemas=[])


def serve_describe(**changes) -> None:
    responses.get(DESCRIBE, json={**describe_rerank(), **changes})


def rerank_answer(*scores: tuple[int, float]) -> dict:
    """`(index, relevance_score)` pairs, best first as the server sorts them; no tokens (return_len false)."""
    return {
        "id": "5e3f5c7a-0000-11ef-0000-000000000000",
        "results": [{"index": index, "relevance_score": score, "document": None} for index, score in scores],
        "meta": {"api_version": None, "billed_units": None, "tokens": None, "warnings": None},
    }


def rerank(docs, query="what is xinference?", score_threshold=None, top_n=None, creds=None):
    return reranker().invoke("my-reranker", creds or credentials(), query, docs, score_threshold, top_n)


def sent_body() -> dict:
    return json.loads(responses.calls[-1].request.body)


# ---- schema ------------------------------------------------------------------------------


@responses.activate
def test_schema_is_a_rerank_model_without_vision_for_text_rerankers():
    serve_describe()
    schema = reranker().get_customizable_model_schema("r", credentials())
    assert schema.model_type == ModelType.RERANK
    assert ModelFeature.VISION not in (schema.features or [])


@responses.activate
def test_image_rerankers_declare_vision():
    serve_describe(model_ability=["rerank", "rerank_vision"])
    assert ModelFeature.VISION in reranker().get_customizable_model_schema("r", credentials()).features


# ---- results -----------------------------------------------------------------------------


@responses.activate
def test_results_map_back_to_the_right_documents_with_duplicates_kept_and_best_first():
    serve_describe()
    responses.post(RERANK, json=rerank_answer((2, 0.91), (0, 0.90), (1, 0.02)))
    docs = ["Xinference serves models.", "Bananas are yellow.", "Xinference serves models."]

    result = rerank(docs)

    assert [(d.index, d.text, d.score) for d in result.docs] == [
        (2, "Xinference serves models.", 0.91),
        (0, "Xinference serves models.", 0.90),
        (1, "Bananas are yellow.", 0.02),
    ]


@responses.activate
def test_the_server_is_not_asked_to_echo_documents_and_gets_top_n():
    serve_describe()
    responses.post(RERANK, json=rerank_answer((1, 0.8)))
    rerank(["a", "b", "c"], top_n=1)
    assert sent_body() == {
        "model": UID,
        "query": "what is xinference?",
        "documents": ["a", "b", "c"],
        "return_documents": False,
        "top_n": 1,
    }


@responses.activate
def test_top_n_larger_than_the_document_count_returns_every_document():
    serve_describe()
    responses.post(RERANK, json=rerank_answer((1, 0.7), (0, 0.3)))
    assert [d.index for d in rerank(["a", "b"], top_n=10).docs] == [1, 0]


@responses.activate
def test_top_n_zero_means_none_as_the_daemon_sends_it_every_document_comes_back():
    # Dify's top_n=None reaches the plugin as 0 through the daemon; Xinference would cut to nothing.
    serve_describe()
    responses.post(RERANK, json=rerank_answer((1, 0.7), (0, 0.3)))

    assert [d.index for d in rerank(["a", "b"], top_n=0).docs] == [1, 0]
    assert "top_n" not in sent_body()


@responses.activate
def test_top_n_is_honoured_even_if_an_engine_returns_more():
    serve_describe()
    responses.post(RERANK, json=rerank_answer((0, 0.2), (1, 0.7), (2, 0.5)))
    assert [d.index for d in rerank(["a", "b", "c"], top_n=2).docs] == [1, 2]


@responses.activate
def test_score_threshold_drops_lower_scores_and_keeps_equal_ones():
    serve_describe()
    responses.post(RERANK, json=rerank_answer((0, 0.9), (1, 0.5), (2, 0.49)))
    assert [d.index for d in rerank(["a", "b", "c"], score_threshold=0.5).docs] == [0, 1]


@responses.activate
def test_scores_pass_through_unnormalised():
    serve_describe()
    responses.post(RERANK, json=rerank_answer((1, 7.25), (0, -3.5)))
    assert [d.score for d in rerank(["a", "b"]).docs] == [7.25, -3.5]
    responses.post(RERANK, json=rerank_answer((1, 7.25), (0, -3.5)))
    assert [d.score for d in rerank(["a", "b"], score_threshold=0.0).docs] == [7.25]


@responses.activate
def test_no_documents_gives_an_empty_result_without_calling_the_server():
    assert rerank([]).docs == []
    assert len(responses.calls) == 0


@responses.activate
def test_an_index_outside_the_documents_is_a_server_error():
    serve_describe()
    responses.post(RERANK, json=rerank_answer((5, 0.9)))
    with pytest.raises(InvokeServerUnavailableError, match="indices \\[5\\] for 2 documents"):
        rerank(["a", "b"])


# ---- images ------------------------------------------------------------------------------


@responses.activate
def test_image_documents_are_sent_as_data_urls_and_map_back():
    serve_describe(model_ability=["rerank", "rerank_vision"])
    responses.post(RERANK, json=rerank_answer((0, 0.8), (1, 0.1)))
    query = MultiModalContent(content="a red car", content_type=MultiModalContentType.TEXT)
    docs = [
        MultiModalContent(content=JPEG, content_type=MultiModalContentType.IMAGE),
        MultiModalContent(content="a bicycle", content_type=MultiModalContentType.TEXT),
    ]

    result = reranker().invoke_multimodal("my-reranker", credentials(), query, docs)

    assert sent_body()["query"] == {"text": "a red car"}
    assert sent_body()["documents"] == [{"image": f"data:image/jpeg;base64,{JPEG}"}, {"text": "a bicycle"}]
    assert [(d.index, d.text) for d in result.docs] == [(0, JPEG), (1, "a bicycle")]


# ---- errors --------------------------------------------------------------------------------


# ---- validation ----------------------------------------------------------------------------


@responses.activate
def test_validation_describes_then_reranks_two_short_documents():
    serve_describe()
    responses.post(RERANK, json=rerank_answer((0, 0.9), (1, 0.1)))
    reranker().validate_credentials("my-reranker", credentials())
    assert [call.request.method for call in responses.calls] == ["GET", "POST"]
    assert len(sent_body()["documents"]) == 2


"""Rerank models served by Xinference (`POST /v1/rerank`): text documents and, for models
with the `rerank_vision` ability (Xinference 4.x; 3.2 takes text only), images."""

from collections.abc import Sequence
from typing import Any

from dify_plugin import RerankModel
from dify_plugin.entities.model import AIModelEntity, ModelFeature, ModelType
from dify_plugin.entities.model.rerank import MultiModalRerankResult, RerankResult
from dify_plugin.entities.model.text_embedding import MultiModalContent
from dify_plugin.errors.model import InvokeServerUnavailableError

from models.common.credentials import ServerSettings
from models.common.http import XinferenceClient
from models.common.model_base import XinferenceModel, customizable_schema
from models.common.wire import ModelDescription, RerankAnswer, RerankItem, multimodal_inputs, parse_wire

_Input = str | dict[str, str]


class XinferenceRerankModel(XinferenceModel[ServerSettings], RerankModel):
    xinference_model_type = "rerank"
    dify_type_name = "rerank"

    def _invoke(
        self,
        model: str,
        credentials: dict,
        query: str,
        docs: list[str],
        score_threshold: float | None = None,
        top_n: int | None = None,
        user: str | None = None,
    ) -> RerankResult:
        documents: list[_Input] = list(docs)
        ranked = self._rerank(credentials, query, documents, score_threshold, top_n)
        return RerankResult.model_validate({"model": model, "docs": _documents(ranked, docs)})

    def _invoke_multimodal(
        self,
        model: str,
        credentials: dict,
        query: MultiModalContent,
        docs: Sequence[MultiModalContent],
        score_threshold: float | None = None,
        top_n: int | None = None,
        user: str | None = None,
    ) -> MultiModalRerankResult:
        wire_query, *wire_docs = multimodal_inputs([query, *docs])
        ranked = self._rerank(credentials, wire_query, wire_docs, score_threshold, top_n)
        return MultiModalRerankResult.model_validate(
            {"model": model, "docs": _documents(ranked, [doc.content for doc in docs])}
        )

    def validate_credentials(self, model: str, credentials: dict) -> None:
        self.validate_with_probe(credentials, _rerank_two_short_documents)

    def get_customizable_model_schema(self, model: str, credentials: dict) -> AIModelEntity:
        description = self.prepare(credentials).description
        return customizable_schema(
            model,
            ModelType.RERANK,
            {},
            features=[ModelFeature.VISION] if description.has("rerank_vision") else [],
        )

    # `_invoke_error_mapping` and `_transform_invoke_error` come from XinferenceModel.

    def _rerank(
        self,
        credentials: dict,
        query: _Input,
        documents: list[_Input],
        score_threshold: float | None,
        top_n: int | None,
    ) -> list[RerankItem]:
        """The best `top_n` results, best first, without those scoring under `score_threshold`."""
        if not documents:
            return []
        if top_n is not None and top_n <= 0:
            # The daemon passes Dify's "no top_n" (None) on as 0, a Go int's zero value.
            top_n = None
        settings = self.prepare(credentials).settings
        ranked = _post_rerank(settings, query, documents, top_n)
        return [item for item in ranked if score_threshold is None or item.relevance_score >= score_threshold]


def _post_rerank(
    settings: ServerSettings, query: _Input, documents: list[_Input], top_n: int | None
) -> list[RerankItem]:
    body: dict[str, Any] = {"model": settings.model_uid, "query": query, "documents": documents, "return_documents": False}
    if top_n is not None:
        body["top_n"] = top_n
    answer = parse_wire(RerankAnswer, XinferenceClient(settings).post_json("/v1/rerank", body))
    if any(not 0 <= item.index < len(documents) for item in answer.results):
        raise InvokeServerUnavailableError(
            f"Xinference answered document indices {[item.index for item in answer.results][:10]} "
            f"for {len(documents)} documents"
        )
    # The server already sorts and cuts; doing it here keeps the promise for every engine.
    return sorted(answer.results, key=lambda item: item.relevance_score, reverse=True)[:top_n]


def _documents(ranked: list[RerankItem], texts: Sequence[str]) -> list[dict]:
    # Plain dicts, validated in one go with the result: a third faster than a model each.
    return [{"index": item.index, "text": texts[item.index], "score": item.relevance_score} for item in ranked]


def _rerank_two_short_documents(settings: ServerSettings, description: ModelDescription) -> None:
    results = _post_rerank(settings, "What is Xinference?", ["Xinference serves models.", "Bananas are yellow."], None)
    if len(results) != 2:
        raise InvokeServerUnavailableError(f"Xinference ranked {len(results)} of 2 documents")

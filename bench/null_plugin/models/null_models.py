"""Every call answered with a fixed, correctly shaped result; no HTTP request, no other work.

What a call through the daemon costs with these models is the daemon's and the SDK's own
floor. The answers are shaped like the Xinference plugin's on the bench's testbed: a chat of
`chunks` pieces (the last with usage and finish reason), `dimensions`-long vectors of
realistic floats, every document scored.
"""

from collections.abc import Generator
from decimal import Decimal

from dify_plugin import LargeLanguageModel, RerankModel, TextEmbeddingModel
from dify_plugin.entities import I18nObject
from dify_plugin.entities.model import (
    AIModelEntity,
    EmbeddingInputType,
    FetchFrom,
    ModelPropertyKey,
    ModelType,
    ParameterRule,
)
from dify_plugin.entities.model.llm import LLMMode, LLMResult, LLMResultChunk, LLMResultChunkDelta
from dify_plugin.entities.model.message import AssistantPromptMessage, PromptMessage, PromptMessageTool
from dify_plugin.entities.model.rerank import RerankDocument, RerankResult
from dify_plugin.entities.model.text_embedding import EmbeddingUsage, TextEmbeddingResult
from dify_plugin.errors.model import InvokeError

ANSWER = "Hello from the tiny testbed model."
DEFAULT_CHUNKS = 9
DEFAULT_DIMENSIONS = 384
MAX_CHUNKS = 32  # texts per embedding call Dify sends (the schema's max_chunks)


def _count(credentials: dict, key: str, default: int) -> int:
    return int(credentials.get(key) or default)


def _pieces(text: str, count: int) -> list[str]:
    """`text` in `count` pieces (the last ones empty when there are more pieces than characters)."""
    size = max(1, -(-len(text) // count))
    return [text[number * size : (number + 1) * size] for number in range(count)]


def _vector(dimensions: int) -> list[float]:
    # Values like a real model's at float32 precision (9 significant digits, as the Xinference
    # plugin sends them), so the answer's JSON is as long as a real one.
    return [float(f"{((index * 7919) % 2000 - 1000) / 12345.678901:.9g}") for index in range(dimensions)]


def _embedding_usage(tokens: int) -> EmbeddingUsage:
    zero = Decimal(0)
    return EmbeddingUsage(tokens=tokens, total_tokens=tokens, unit_price=zero, price_unit=zero, total_price=zero,
                          currency="USD", latency=0.0)  # fmt: skip


def _schema(model: str, model_type: ModelType, properties: dict, rules: list[ParameterRule]) -> AIModelEntity:
    return AIModelEntity(
        model=model,
        label=I18nObject(en_US=model),
        model_type=model_type,
        fetch_from=FetchFrom.CUSTOMIZABLE_MODEL,
        model_properties=properties,
        parameter_rules=rules,
    )


class NullLargeLanguageModel(LargeLanguageModel):
    def _invoke(
        self,
        model: str,
        credentials: dict,
        prompt_messages: list[PromptMessage],
        model_parameters: dict,
        tools: list[PromptMessageTool] | None = None,
        stop: list[str] | None = None,
        stream: bool = True,
        user: str | None = None,
    ) -> LLMResult | Generator[LLMResultChunk, None, None]:
        count = _count(credentials, "chunks", DEFAULT_CHUNKS)
        if stream:
            return self._chunks(model, credentials, count)
        return LLMResult(
            model=model,
            prompt_messages=[],
            message=AssistantPromptMessage(content=ANSWER),
            usage=self._calc_response_usage(model, credentials, 20, count),
        )

    def _chunks(self, model: str, credentials: dict, count: int) -> Generator[LLMResultChunk, None, None]:
        """`count` chunks as the Xinference plugin streams them: the text, then an empty
        last chunk with usage and finish reason."""
        pieces = _pieces(ANSWER, max(1, count - 1))
        for index, piece in enumerate(pieces):
            yield LLMResultChunk(
                model=model, prompt_messages=[],
                delta=LLMResultChunkDelta(index=index, message=AssistantPromptMessage(content=piece)),
            )  # fmt: skip
        yield LLMResultChunk(
            model=model,
            prompt_messages=[],
            delta=LLMResultChunkDelta(
                index=len(pieces),
                message=AssistantPromptMessage(content=""),
                usage=self._calc_response_usage(model, credentials, 20, len(pieces)),
                finish_reason="stop",
            ),
        )

    def get_num_tokens(
        self,
        model: str,
        credentials: dict,
        prompt_messages: list[PromptMessage],
        tools: list[PromptMessageTool] | None = None,
    ) -> int:
        return 20

    def validate_credentials(self, model: str, credentials: dict) -> None:
        pass

    def get_customizable_model_schema(self, model: str, credentials: dict) -> AIModelEntity:
        return _schema(
            model,
            ModelType.LLM,
            {ModelPropertyKey.MODE: LLMMode.CHAT.value, ModelPropertyKey.CONTEXT_SIZE: 2048},
            [
                ParameterRule(name="temperature", use_template="temperature", max=2.0),
                ParameterRule(name="max_tokens", use_template="max_tokens", min=1, max=2048, default=512),
            ],
        )

    @property
    def _invoke_error_mapping(self) -> dict[type[InvokeError], list[type[Exception]]]:
        return {}


class NullTextEmbeddingModel(TextEmbeddingModel):
    def _invoke(
        self,
        model: str,
        credentials: dict,
        texts: list[str],
        user: str | None = None,
        input_type: EmbeddingInputType = EmbeddingInputType.DOCUMENT,
    ) -> TextEmbeddingResult:
        vector = _vector(_count(credentials, "dimensions", DEFAULT_DIMENSIONS))
        return TextEmbeddingResult(
            model=model,
            embeddings=[vector] * len(texts),
            usage=_embedding_usage(sum(self.get_num_tokens(model, credentials, texts))),
        )

    def get_num_tokens(self, model: str, credentials: dict, texts: list[str]) -> list[int]:
        return [len(text) // 4 + 1 for text in texts]

    def validate_credentials(self, model: str, credentials: dict) -> None:
        pass

    def get_customizable_model_schema(self, model: str, credentials: dict) -> AIModelEntity:
        return _schema(
            model,
            ModelType.TEXT_EMBEDDING,
            {ModelPropertyKey.CONTEXT_SIZE: 512, ModelPropertyKey.MAX_CHUNKS: MAX_CHUNKS},
            [],
        )

    @property
    def _invoke_error_mapping(self) -> dict[type[InvokeError], list[type[Exception]]]:
        return {}


class NullRerankModel(RerankModel):
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
        ranked = [
            RerankDocument(index=index, text=text, score=1.0 - index / (len(docs) + 1))
            for index, text in enumerate(docs)
        ]
        if score_threshold is not None:
            ranked = [doc for doc in ranked if doc.score >= score_threshold]
        return RerankResult(model=model, docs=ranked[:top_n] if top_n else ranked)

    def validate_credentials(self, model: str, credentials: dict) -> None:
        pass

    def get_customizable_model_schema(self, model: str, credentials: dict) -> AIModelEntity:
        return _schema(model, ModelType.RERANK, {ModelPropertyKey.CONTEXT_SIZE: 512}, [])

    @property
    def _invoke_error_mapping(self) -> dict[type[InvokeError], list[type[Exception]]]:
        return {}

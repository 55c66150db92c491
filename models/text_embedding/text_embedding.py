"""Embedding models served by Xinference (`POST /v1/embeddings`): texts and, for models
with the `embed_vision` ability, images."""

import time
from decimal import Decimal

from dify_plugin import TextEmbeddingModel
from dify_plugin.entities.model import (
    AIModelEntity,
    EmbeddingInputType,
    ModelFeature,
    ModelPropertyKey,
    ModelType,
)
from dify_plugin.entities.model.text_embedding import (
    EmbeddingUsage,
    MultiModalContent,
    MultiModalEmbeddingResult,
    TextEmbeddingResult,
)
from dify_plugin.errors.model import InvokeServerUnavailableError

from models.common.concurrency import ordered_map
from models.common.credentials import EmbeddingSettings, ServerSettings
from models.common.errors import XinferenceError
from models.common.http import XinferenceClient
from models.common.model_base import XinferenceModel, customizable_schema
from models.common.tokens import cut_to_tokens, estimate_tokens
from models.common.wire import EmbeddingAnswer, ModelDescription, multimodal_inputs, parse_wire
from models.text_embedding.limits import max_chunks
from models.text_embedding.retrieval import learn_missing_prompt, report_prompt_in_use, retrieval_fields
from models.text_embedding.vectors import float32_vector

# Built-in models declare `max_tokens`; a custom model registered without it gets this.
DEFAULT_CONTEXT_SIZE = 512
CONCURRENT_BATCHES = 4
# Texts cut on the client keep this share of the context: the offline estimate may run
# ~25% under a real tokenizer, and 0.8 × 1.25 = 1.
CLIENT_CUT_SHARE = 0.8

_Input = str | dict[str, str]


class XinferenceTextEmbeddingModel(XinferenceModel[EmbeddingSettings], TextEmbeddingModel):
    settings_type = EmbeddingSettings
    xinference_model_type = "embedding"
    dify_type_name = "text embedding"

    def _invoke(
        self,
        model: str,
        credentials: dict,
        texts: list[str],
        user: str | None = None,
        input_type: EmbeddingInputType = EmbeddingInputType.DOCUMENT,
    ) -> TextEmbeddingResult:
        vectors, tokens = self._embed(credentials, list(texts), input_type)
        return TextEmbeddingResult(model=model, embeddings=vectors, usage=self._usage(tokens))

    def _invoke_multimodal(
        self,
        model: str,
        credentials: dict,
        documents: list[MultiModalContent],
        user: str | None = None,
        input_type: EmbeddingInputType = EmbeddingInputType.DOCUMENT,
    ) -> MultiModalEmbeddingResult:
        vectors, tokens = self._embed(credentials, multimodal_inputs(documents), input_type)
        return MultiModalEmbeddingResult(model=model, embeddings=vectors, usage=self._usage(tokens))

    def get_num_tokens(self, model: str, credentials: dict, texts: list[str]) -> list[int]:
        return [estimate_tokens(text) for text in texts]

    def validate_credentials(self, model: str, credentials: dict) -> None:
        self.validate_with_probe(credentials, _embed_one_short_text)

    def get_customizable_model_schema(self, model: str, credentials: dict) -> AIModelEntity:
        settings, description = self.prepare(credentials)
        return customizable_schema(
            model,
            ModelType.TEXT_EMBEDDING,
            {
                ModelPropertyKey.CONTEXT_SIZE: _context_size(description),
                # Dify hands over at most this many texts per call, one call after another:
                # room for several batches lets them run concurrently, as long as the
                # answer fits the daemon's line.
                ModelPropertyKey.MAX_CHUNKS: max_chunks(description.dimensions, settings.batch_size * CONCURRENT_BATCHES),
            },
            features=[ModelFeature.VISION] if description.has("embed_vision") else [],
        )

    # `_invoke_error_mapping` and `_transform_invoke_error` come from XinferenceModel.

    # ---- the work ----------------------------------------------------------------------

    def _embed(
        self, credentials: dict, inputs: list[_Input], input_type: EmbeddingInputType
    ) -> tuple[list[list[float]], int]:
        """Vectors in input order and the tokens used; batches go out a few at a time."""
        settings, description = self.prepare(credentials)
        batch_size = settings.batch_size
        client = XinferenceClient(settings)
        options: dict = {}
        if _server_truncates(description):
            options["truncate_prompt_tokens"] = -1  # -1: the model's own max_tokens
        else:
            inputs = [_cut_if_too_long(item, _context_size(description)) for item in inputs]
        all_text = all(isinstance(item, str) for item in inputs)

        def embed(batch: list[_Input]) -> tuple[list[list[float]], int]:
            fields = retrieval_fields(settings, description, input_type, all_text)
            try:
                answer = _embed_batch(client, settings.model_uid, batch, {**options, **fields})
            except XinferenceError as error:
                if not learn_missing_prompt(settings, description, fields, error):
                    raise
                fields = retrieval_fields(settings, description, input_type, all_text)
                answer = _embed_batch(client, settings.model_uid, batch, {**options, **fields})
            report_prompt_in_use(settings, description, fields)
            return answer

        batches = [inputs[start : start + batch_size] for start in range(0, len(inputs), batch_size)]
        vectors: list[list[float]] = []
        tokens = 0
        for batch_vectors, batch_tokens in ordered_map(embed, batches, CONCURRENT_BATCHES):
            vectors += batch_vectors
            tokens += batch_tokens
        return vectors, tokens

    def _usage(self, tokens: int) -> EmbeddingUsage:
        # Self-hosted models have no price.
        return EmbeddingUsage(
            tokens=tokens,
            total_tokens=tokens,
            unit_price=Decimal(0),
            price_unit=Decimal(0),
            total_price=Decimal(0),
            currency="USD",
            latency=time.perf_counter() - self.started_at,
        )


def _embed_batch(
    client: XinferenceClient, model_uid: str, batch: list[_Input], options: dict
) -> tuple[list[list[float]], int]:
    """One request: the batch's vectors in input order and its tokens (the server's count, else an estimate)."""
    # base64: honoured from Xinference 4.0 on; every version since 0.10.1 drops the field
    # before the engine (older ones pass no extra fields at all), so it is always safe.
    body = {"model": model_uid, "input": batch, "encoding_format": "base64", **options}
    raw = client.post_json("/v1/embeddings", body)
    answer = parse_wire(EmbeddingAnswer, raw)
    items = sorted(answer.data, key=lambda item: item.index)
    # Xinference 1.17.1 numbers on across concurrent requests it ran as one batch (a second
    # request's three vectors come as 3, 4, 5): the order is what counts.
    first = items[0].index if items else 0
    if [item.index - first for item in items] != list(range(len(batch))):
        raise InvokeServerUnavailableError(
            f"Xinference answered {len(items)} embeddings with indices "
            f"{[item.index for item in items][:10]} for {len(batch)} inputs"
        )
    if answer.usage is not None and answer.usage.prompt_tokens > 0:
        tokens = answer.usage.prompt_tokens
    else:
        tokens = sum(estimate_tokens(_text_of(item)) for item in batch)
    return [float32_vector(item.embedding) for item in items], tokens


def _embed_one_short_text(settings: ServerSettings, description: ModelDescription) -> None:
    vectors, _ = _embed_batch(XinferenceClient(settings), settings.model_uid, ["Hello"], {})
    if not vectors[0]:
        raise InvokeServerUnavailableError("Xinference answered an empty embedding vector")


# ---- settings and what the server's description implies ------------------------------


def _context_size(description: ModelDescription) -> int:
    return description.max_tokens or DEFAULT_CONTEXT_SIZE


def _server_truncates(description: ModelDescription) -> bool:
    # Xinference honours `truncate_prompt_tokens` for every engine from 3.0 on. Older
    # servers hand unknown fields to the engine, where some fail on them (the flag
    # engine's tokenizer). Embedding descriptions carry `model_engine` from 3.1 on.
    return "model_engine" in description.model_fields_set


def _cut_if_too_long(item: _Input, context_size: int) -> _Input:
    text = _text_of(item)
    if estimate_tokens(text) <= context_size:
        return item
    cut = cut_to_tokens(text, int(context_size * CLIENT_CUT_SHARE))
    return cut if isinstance(item, str) else {**item, "text": cut}


def _text_of(item: _Input) -> str:
    return item if isinstance(item, str) else item.get("text", "")

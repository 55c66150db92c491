"""What crosses the wire to and from Xinference, as small typed structures.

Answers (the model description, chat/generate, embeddings, rerank, transcription) are
parsed once at the boundary with `parse_wire`; only the fields the plugin reads are
declared, everything else is ignored, because the answers grow new fields from version
to version (0.16 → 4.x). Multimodal inputs are built here too (`multimodal_inputs`). The
chat request's messages and tools are built by `models/llm/request.py`.
"""

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from dify_plugin.entities.model.text_embedding import MultiModalContent, MultiModalContentType
from dify_plugin.errors.model import InvokeServerUnavailableError
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

_Wire = TypeVar("_Wire", bound=BaseModel)


class _WireModel(BaseModel):
    model_config = ConfigDict(extra="ignore")


def parse_wire(shape: type[_Wire], data: object) -> _Wire:
    """Parses an answer; an answer of the wrong shape is the server's fault, said plainly."""
    try:
        return shape.model_validate(data)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem.get("loc", ()))
        raise InvokeServerUnavailableError(
            f"Xinference sent an answer of an unexpected shape ({shape.__name__}): "
            f"{where + ': ' if where else ''}{problem.get('msg')}"
        ) from None
    except RecursionError:
        raise InvokeServerUnavailableError(
            f"Xinference sent an answer of an unexpected shape ({shape.__name__}): nested too deeply"
        ) from None


# ---- the model description (`GET /v1/models/{uid}`) ------------------------------------


class ModelDescription(_WireModel):
    """The fields of a describe answer the plugin uses; the rest differs by version."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    model_type: str = ""
    model_name: str | None = None
    model_family: str | None = None
    # Embedding and rerank descriptions carry this key from Xinference 3.1 on (null or not).
    model_engine: str | None = None
    model_ability: list[str] = Field(default_factory=list)
    context_length: int | None = None
    # embedding models
    dimensions: int | None = None
    max_tokens: int | None = None

    @property
    def kind(self) -> str:
        """The model type, lower-cased: 'llm', 'embedding', 'rerank', 'audio', 'image', ..."""
        return self.model_type.lower()

    def has(self, ability: str) -> bool:
        return ability in self.model_ability

    _derived: dict[Any, Any] = PrivateAttr(default_factory=dict)

    def derived(self, key: Any, build: Callable[[], Any]) -> Any:
        """A value built from this description (e.g. a Dify model schema), built once and
        kept exactly as long as the description stays in the cache."""
        if key not in self._derived:
            self._derived[key] = build()
        return self._derived[key]


class Usage(_WireModel):
    """Counts may be -1 (or missing) when the engine reports none."""

    prompt_tokens: int = -1
    completion_tokens: int = -1
    total_tokens: int = -1

    @property
    def known(self) -> bool:
        return self.prompt_tokens >= 0 and self.completion_tokens >= 0


# ---- chat and generate ------------------------------------------------------------


class FunctionCall(_WireModel):
    name: str | None = None
    arguments: str | None = None

    @field_validator("arguments", mode="before")
    @classmethod
    def _arguments_as_json_text(cls, value: object) -> object:
        return json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else value


class ToolCall(_WireModel):
    # `index` is absent on 0.16/1.x, where every streamed chunk carried complete calls.
    index: int | None = None
    id: str | None = None
    type: str | None = None
    function: FunctionCall = Field(default_factory=FunctionCall)


class Message(_WireModel):
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCall] | None = None


class Choice(_WireModel):
    index: int = 0
    message: Message | None = None  # chat, blocking
    delta: Message | None = None  # chat, streamed
    text: str | None = None  # generate
    finish_reason: str | None = None


class CompletionAnswer(_WireModel):
    """A chat or generate answer, blocking or one streamed chunk."""

    choices: list[Choice] = []
    usage: Usage | None = None


# ---- embeddings and rerank ----------------------------------------------------------


class EmbeddingItem(_WireModel):
    index: int
    # JSON numbers, or with `encoding_format: "base64"` (honoured from 4.0 on) a base64
    # string of little-endian float32 values.
    embedding: list[float] | str


class EmbeddingAnswer(_WireModel):
    data: list[EmbeddingItem]
    usage: Usage | None = None


class RerankItem(_WireModel):
    index: int
    relevance_score: float


class RerankTokens(_WireModel):
    input_tokens: int = -1
    output_tokens: int = -1


class RerankMeta(_WireModel):
    tokens: RerankTokens | None = None


class RerankAnswer(_WireModel):
    results: list[RerankItem]
    meta: RerankMeta | None = None


# ---- multimodal inputs (embeddings ≥ 1.1, rerank 4.x) ------------------------------------

_IMAGE_SIGNATURES = {b"\x89PNG": "image/png", b"\xff\xd8\xff": "image/jpeg", b"GIF8": "image/gif", b"RIFF": "image/webp"}


def multimodal_inputs(contents: Sequence[MultiModalContent]) -> list[str | dict[str, str]]:
    """Dify's multimodal contents as `/v1/embeddings` and `/v1/rerank` take them.

    All text: plain strings, which every server version takes. Otherwise every item is
    `{"text": ...}` or `{"image": <data URL>}`: servers before 4.x reject lists that mix both.
    """
    if all(content.content_type == MultiModalContentType.TEXT for content in contents):
        return [content.content for content in contents]
    return [
        {"text": content.content}
        if content.content_type == MultiModalContentType.TEXT
        else {"image": _image_url(content.content)}
        for content in contents
    ]


def _image_url(content: str) -> str:
    # Dify sends bare base64; Xinference decodes only `data:image/...;base64,` strings
    # and treats anything else as a URL or a file path to open.
    if content.startswith(("data:", "http://", "https://")):
        return content
    try:
        head = base64.b64decode(content[:16])
    except binascii.Error:
        head = b""
    mime = next((mime for magic, mime in _IMAGE_SIGNATURES.items() if head.startswith(magic)), "image/png")
    return f"data:{mime};base64,{content}"


# ---- audio ------------------------------------------------------------------------------


class TranscriptionAnswer(_WireModel):
    """`/v1/audio/transcriptions` with `response_format=json`."""

    text: str

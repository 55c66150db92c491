"""Xinference's answers as small typed structures, parsed once at the boundary.

Only the fields the plugin reads are declared; everything else is ignored, because
the answers grow new fields from version to version (0.16 → 4.x).
"""

import json
from typing import TypeVar

from dify_plugin.errors.model import InvokeServerUnavailableError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

_Wire = TypeVar("_Wire", bound=BaseModel)


class _WireModel(BaseModel):
    model_config = ConfigDict(extra="ignore")


def parse_wire(shape: type[_Wire], data: object) -> _Wire:
    """Parses an answer; an answer of the wrong shape is the server's fault, said plainly."""
    try:
        return shape.model_validate(data)
    except ValidationError as exc:
        raise InvokeServerUnavailableError(
            f"Xinference sent an answer of an unexpected shape ({shape.__name__}): "
            f"{exc.errors()[0].get('msg')} in {json.dumps(data)[:300]}"
        ) from None


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
    embedding: list[float]


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

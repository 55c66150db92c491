"""The LLM settings an admin can save to fill in what a model's description lacks.

A Token Router UID is described with abilities ["chat"] only and no context length, and
custom registrations can be as thin. Saved settings win over the description; an empty
field (or "auto") changes nothing.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from models.common.metadata import ModelDescription


class OverrideError(ValueError):
    """A saved LLM setting holds a value the plugin cannot use (the message names the field)."""


class Switch(Enum):
    AUTO = "auto"
    ON = "on"
    OFF = "off"

    def decide(self, from_description: bool) -> bool:
        return from_description if self is Switch.AUTO else self is Switch.ON


@dataclass(frozen=True)
class LLMOverrides:
    context_size: int | None = None
    max_output_tokens: int | None = None
    tool_calling: Switch = Switch.AUTO
    vision: Switch = Switch.AUTO
    structured_output: Switch = Switch.AUTO

    def context_length(self, description: ModelDescription) -> int | None:
        return self.context_size or description.context_length


# The credential form's variable names (provider/xinference.yaml).
CONTEXT_SIZE = "llm_context_size"
MAX_OUTPUT_TOKENS = "llm_max_output_tokens"
TOOL_CALLING = "llm_tool_calling"
VISION = "llm_vision"
STRUCTURED_OUTPUT = "llm_structured_output"


def parse_overrides(credentials: Mapping) -> LLMOverrides:
    return LLMOverrides(
        context_size=_tokens(credentials, CONTEXT_SIZE),
        max_output_tokens=_tokens(credentials, MAX_OUTPUT_TOKENS),
        tool_calling=_switch(credentials, TOOL_CALLING),
        vision=_switch(credentials, VISION),
        structured_output=_switch(credentials, STRUCTURED_OUTPUT),
    )


def _tokens(credentials: Mapping, name: str) -> int | None:
    raw = credentials.get(name)
    if raw is None or str(raw).strip() == "":
        return None
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise OverrideError(f"{name} must be a whole number of tokens, got {raw!r}") from None
    if value < 1:
        raise OverrideError(f"{name} must be at least 1 token, got {raw!r}")
    return value


def _switch(credentials: Mapping, name: str) -> Switch:
    raw = str(credentials.get(name) or "").strip().lower()
    if raw == "":
        return Switch.AUTO
    try:
        return Switch(raw)
    except ValueError:
        raise OverrideError(f"{name} must be auto, on or off, got {credentials.get(name)!r}") from None

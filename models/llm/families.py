"""What a model's family implies beyond its abilities: what its chat template reads or drops.

The description names the family (`model_family`, or `model_name` for a built-in model);
a custom registration names the built-in family whose template it reuses. The chat
templates themselves stay on the server, so what they need is recorded here, checked
against every family of Xinference's catalog by the conformance tier (tests/conformance).
"""

from dataclasses import dataclass

from models.common.metadata import ModelDescription


@dataclass(frozen=True)
class ReasoningEffort:
    options: tuple[str, ...]
    default: str


# Families whose chat template reads `reasoning_effort` (Xinference 4.1.0's templates):
# gpt-oss writes "Reasoning: <effort>"; GLM-5.2 knows high and max (anything else is max);
# GLM-5.3 low, high and max; the qwen3.8 family xhigh, medium and low, which the server
# also checks (400 for any other value).
_REASONING_EFFORTS = {
    "gpt-oss": ReasoningEffort(("low", "medium", "high"), "medium"),
    "glm-5.2": ReasoningEffort(("high", "max"), "max"),
    "glm-5.3": ReasoningEffort(("low", "high", "max"), "max"),
    "qwen3.8": ReasoningEffort(("low", "medium", "xhigh"), "xhigh"),
    "qwen3.8-max": ReasoningEffort(("low", "medium", "xhigh"), "xhigh"),
    "qwen3.8-Flash-Next": ReasoningEffort(("low", "medium", "xhigh"), "xhigh"),
}

# Templates that render no system message at all: deepseek-v3's reads a `system` variable
# Xinference never sets, orion-chat's knows only user and assistant turns.
_NO_SYSTEM_ROLE = {"deepseek-v3", "orion-chat"}

# Templates that iterate tool-call arguments as a mapping (`_args.items()`) in a form
# Xinference 4.1.0's own argument normalisation does not recognise.
_ARGUMENTS_AS_OBJECTS = {"MiniMax-M2", "MiniMax-M2.5", "MiniMax-M2.7", "MiniMax-M3"}


@dataclass(frozen=True)
class TemplateNeeds:
    """How a conversation must be shaped for the family's template to render all of it."""

    system_in_first_user: bool = False
    arguments_as_objects: bool = False


def family_of(description: ModelDescription) -> str:
    return description.model_family or description.model_name or ""


def _known(table, description: ModelDescription):
    for name in (family_of(description), description.model_name or ""):
        if name in table:
            return table[name] if isinstance(table, dict) else name
    return None


def reasoning_effort_of(description: ModelDescription) -> ReasoningEffort | None:
    return _known(_REASONING_EFFORTS, description)


def template_needs(description: ModelDescription) -> TemplateNeeds:
    return TemplateNeeds(
        system_in_first_user=_known(_NO_SYSTEM_ROLE, description) is not None,
        arguments_as_objects=_known(_ARGUMENTS_AS_OBJECTS, description) is not None,
    )

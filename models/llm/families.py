"""What a model's family implies beyond its abilities: what its chat template reads and what
the server refuses.

The description names the family (`model_family`, or `model_name` for a built-in model);
a custom registration names the built-in family whose template it reuses.
"""

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from dify_plugin.errors.model import InvokeBadRequestError

from models.common.metadata import ModelDescription

T = TypeVar("T")


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


def family_of(description: ModelDescription) -> str:
    return description.model_family or description.model_name or ""


def reasoning_effort_of(description: ModelDescription) -> ReasoningEffort | None:
    return _REASONING_EFFORTS.get(family_of(description)) or _REASONING_EFFORTS.get(description.model_name or "")


# ---- tool calls the server refuses ------------------------------------------------------
#
# Xinference accepts `tools` (and a conversation ending in a tool result) only for families
# whose tool parser it knows, and answers 400 "Only {…} support tool calls" otherwise. The
# description does not say which families those are (several declare the `tools` ability
# without a parser), and the error's list is cut short in our messages; what the refusal
# proves is enough: this family, on this server, takes no tools. Kept for the process's life.

_REFUSAL = re.compile(r"support tool (calls|messages)")
_refused: set[tuple[str, str]] = set()
_refused_lock = threading.Lock()


def is_tool_refusal(message: str) -> bool:
    return bool(_REFUSAL.search(message))


def remember_tool_refusal(server_url: str, description: ModelDescription) -> None:
    with _refused_lock:
        _refused.add((server_url, family_of(description)))


def server_refuses_tools(server_url: str, description: ModelDescription) -> bool:
    return (server_url, family_of(description)) in _refused


def forget_tool_refusals() -> None:
    with _refused_lock:
        _refused.clear()


def send_without_refused_tools(
    send: Callable[[dict], T], body: dict, server_url: str, description: ModelDescription
) -> T:
    """Sends the body; when the server refuses its tools, remembers that and sends it without them.

    Dify then sees a model without tool calling (the schema stops offering it) and runs its
    agents by prompting instead of function calling.
    """
    try:
        return send(body)
    except InvokeBadRequestError as exc:
        if "tools" not in body or not is_tool_refusal(str(exc)):
            raise
        remember_tool_refusal(server_url, description)
        return send({name: value for name, value in body.items() if name not in ("tools", "tool_choice")})

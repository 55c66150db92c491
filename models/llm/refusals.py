"""Tool calls the server refuses, learnt from its answer.

Xinference accepts `tools` (and a conversation ending in a tool result) only for families
whose tool parser it knows, and answers 400 "Only {…} support tool calls" otherwise. The
description does not say which families those are (several declare the `tools` ability
without a parser), and the error's list is cut short in our messages; what the refusal
proves is enough: this family, on this server, takes no tools. Kept for the process's life.
"""

import re
import threading
from collections.abc import Callable
from typing import TypeVar

from dify_plugin.errors.model import InvokeBadRequestError

from models.common.metadata import ModelDescription
from models.llm.families import family_of
from models.llm.request import tool_turns_as_text

T = TypeVar("T")

# "Only {'qwen2.5-instruct', 'glm4-chat', …} support tool calls": the list is long enough that
# the end of the message may be cut, so the refusal is recognised by its start.
_REFUSAL = re.compile(r"\bOnly \{'[^']+'")
_refused: set[tuple[str, str]] = set()
_refused_lock = threading.Lock()


def server_refuses_tools(server_url: str, description: ModelDescription) -> bool:
    return (server_url, family_of(description)) in _refused


def forget_tool_refusals() -> None:
    with _refused_lock:
        _refused.clear()


def send_without_refused_tools(
    send: Callable[[dict], T], body: dict, server_url: str, description: ModelDescription
) -> T:
    """Sends the body; when the server refuses its tools, remembers that and sends it without.

    Dify then sees a model without tool calling (the schema stops offering it) and runs its
    agents by prompting instead of function calling.
    """
    try:
        return send(body)
    except InvokeBadRequestError as exc:
        if "messages" not in body or not _REFUSAL.search(str(exc)):
            raise
        with _refused_lock:
            _refused.add((server_url, family_of(description)))
        plain = {name: value for name, value in body.items() if name not in ("tools", "tool_choice")}
        plain["messages"] = tool_turns_as_text(body["messages"])
        return send(plain)

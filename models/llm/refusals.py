"""Tool calls the server refuses, learnt from its answer.

Xinference accepts `tools` (and a conversation ending in a tool result) only for families
whose tool parser it knows, and answers 400 "Only {…} support tool calls" otherwise
(`Reason.TOOLS_REFUSED`). The description does not say which families those are (several
declare the `tools` ability without a parser); what the refusal proves is enough: this
family, on this server, takes no tools. Remembered as long as what the plugin learns
(models/common/memory.py).
"""

from collections.abc import Callable
from typing import TypeVar

from models.common.errors import Reason, XinferenceError
from models.common.memory import Memory
from models.common.metadata import ModelDescription
from models.llm.families import family_of
from models.llm.request import tool_turns_as_text

T = TypeVar("T")

# (server URL, family) -> True
_tool_refusals: Memory[tuple[str, str], bool] = Memory()


def server_refuses_tools(server_url: str, description: ModelDescription) -> bool:
    return (server_url, family_of(description)) in _tool_refusals


def send_without_refused_tools(
    send: Callable[[dict], T], body: dict, server_url: str, description: ModelDescription
) -> T:
    """Sends the body; when the server refuses its tools, remembers that and sends it without.

    Dify then sees a model without tool calling (the schema stops offering it) and runs its
    agents by prompting instead of function calling.
    """
    try:
        return send(body)
    except XinferenceError as error:
        if "messages" not in body or error.reason is not Reason.TOOLS_REFUSED:
            raise
        _tool_refusals.put((server_url, family_of(description)), True)
        plain = {name: value for name, value in body.items() if name not in ("tools", "tool_choice")}
        plain["messages"] = tool_turns_as_text(body["messages"])
        return send(plain)

"""Xinference answers for the unit tier, in the shapes /work/shared/xinference-api.md records
(and tests/fixtures/ recorded from a real 4.1.0 server), plus small helpers to serve them."""

import json
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import responses
from dify_plugin.errors.model import InvokeError

from models.common.errors import XinferenceError, to_dify

SERVER = "http://xinference.test:9997"
UID = "qwen-chat"


def credentials(**overrides) -> dict:
    return {"server_url": SERVER, "model_uid": UID, **overrides}


def describe_llm(abilities=("generate", "chat", "tools"), context_length=32768, **extra) -> dict:
    return {
        "model_type": "LLM",
        "address": "127.0.0.1:41227",
        "accelerators": [],
        "model_name": "qwen2.5-instruct",
        "model_lang": ["en", "zh"],
        "model_ability": list(abilities),
        "model_description": "Qwen2.5 instruct",
        "model_format": "pytorch",
        "model_size_in_billions": "0_5",
        "model_family": "qwen2.5-instruct",
        "quantization": "none",
        "model_hub": "huggingface",
        "revision": None,
        "context_length": context_length,
        "replica": 1,
        "model_engine": "Transformers",
        **extra,
    }


def describe_embedding(max_tokens=256, dimensions=384) -> dict:
    return {
        "model_type": "embedding",
        "address": "127.0.0.1:41227",
        "accelerators": [],
        "model_name": "tiny-minilm",
        "dimensions": dimensions,
        "max_tokens": max_tokens,
        "language": ["en"],
        "model_revision": None,
        "model_ability": ["embed"],
    }


def describe_rerank() -> dict:
    return {"model_type": "rerank", "type": "normal", "model_name": "tiny-rerank", "language": ["en"]}


def chat_answer(content="Hello!", finish_reason="stop", usage=(12, 3), tool_calls=None, reasoning=None) -> dict:
    message = {"role": "assistant", "content": content}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1732400000,
        "model": UID,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
    }


def chunk(delta: dict | None = None, finish_reason=None, usage=None, choices=True) -> dict:
    event = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1732400000, "model": UID}
    event["choices"] = (
        [{"index": 0, "delta": delta if delta is not None else {}, "finish_reason": finish_reason}] if choices else []
    )
    if usage is not None:
        event["usage"] = {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}
    return event


def sse(*events, done=True, pings=False) -> bytes:
    """The stream body as the server frames it: `data: <json>\\r\\n\\r\\n`."""
    parts = []
    for event in events:
        if pings:
            parts.append(": ping - 2026-11-23 12:00:00.000000\r\n\r\n")
        parts.append(f"data: {json.dumps(event) if not isinstance(event, str) else event}\r\n\r\n")
    if done:
        parts.append("data: [DONE]\r\n\r\n")
    return "".join(parts).encode()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_answer(method: str, url: str, status: int, body: dict | str) -> None:
    """Registers an answer as Xinference sends it: JSON, or plain text (its unhandled 500s)."""
    if isinstance(body, (dict, list)):
        responses.add(method, url, status=status, json=body)
    else:
        responses.add(method, url, status=status, body=body, content_type="text/plain")


def assert_no_key_piece(error: BaseException, key: str) -> None:
    """No piece of the key of 8+ characters in the error's message, args or repr."""
    shown = " ".join([str(error), repr(error), repr(error.args), str(getattr(error, "description", ""))])
    pieces = [key[start : start + 8] for start in range(len(key) - 7)] or [key]
    leaked = [piece for piece in pieces if piece in shown]
    assert not leaked, f"key pieces {leaked[:3]} in {shown[:300]!r}"


def servers_words(text: str) -> str:
    """The server's words as messages show them: without Xinference's actor prefix ("[address=…, pid=…] ")."""
    return re.sub(r"\[address=[^\]]*, pid=\d+\]\s*", "", text)


class Shown:
    """The error Dify gets, once the `with` block is over."""

    value: InvokeError


@contextmanager
def dify_sees(error_class: type[InvokeError], match: str | None = None) -> Iterator[Shown]:
    """The client raises its classified error; this is what the model class's edge shows Dify of it (`to_dify`)."""
    shown = Shown()
    with pytest.raises(XinferenceError) as raised:
        yield shown
    shown.value = to_dify(raised.value)
    assert type(shown.value) is error_class, f"{type(shown.value).__name__}: {shown.value}"
    if match is not None:
        assert re.search(match, str(shown.value)), str(shown.value)

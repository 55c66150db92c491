"""The Xinference half of the conformance tier; runs in the testbed's Python 3.11 venv.

A loopback HTTP server that answers like Xinference 4.1.0 for every LLM family of its own
catalog, using the installed package's own code (nothing here re-implements it):
- `GET /v1/models/<family>`: the family's description (`LLMFamilyV2.to_description()`, which
  computes `strict_system_first` from the template), as the supervisor describes a model.
- `POST /v1/chat/completions`: the server's real request handler
  (`RESTfulAPI.create_chat_completion`: tool-call family sets, `strict_system_first`, the
  qwen3.8 `reasoning_effort` checks, `enable_thinking` handling), with a stand-in model whose
  `chat` renders the prompt through the Transformers engine's own path
  (`PytorchChatModel._get_full_prompt` → `ChatModelMixin.get_full_context` → the
  tokenizer's `apply_chat_template`, falling back to `_build_from_raw_template` as the
  server does; the family's template, its reasoning and tool parsers). The family's own
  tokenizer files are not here: a vocabulary-free tokenizer with `<s>`/`</s>` stands in,
  which renders templates exactly as a real one (`tokenize=False`).
  The answer's `content` is the rendered prompt; a template error answers 500 with its text.
- `GET /catalog`: what the plugin side needs to judge a rendered prompt.

Usage: python xinference_side.py  → prints `listening <port>` and serves until stdin closes.
"""

import asyncio
import json
import logging
import sys
import threading
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

warnings.filterwarnings("ignore")
logging.disable(logging.CRITICAL)

import xinference.api.restful_api as restful_api  # noqa: E402
import xinference.model.llm as llm  # noqa: E402
from fastapi import HTTPException  # noqa: E402
from starlette.requests import Request  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from tokenizers.models import WordLevel  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402
from xinference.model.llm.transformers.core import PytorchChatModel  # noqa: E402

llm._install()
restful_api.XINFERENCE_TOKEN_ROUTER_ENABLED = False  # a plain server, no virtual UIDs
FAMILIES = {family.model_name: family for family in llm.BUILTIN_LLM_FAMILIES}
TEMPLATE_ERRORS: dict[str, str] = {}  # request id → the template's own error text
TOKENIZER = PreTrainedTokenizerFast(
    tokenizer_object=Tokenizer(WordLevel({"<unk>": 0, "<s>": 1, "</s>": 2}, unk_token="<unk>")),
    bos_token="<s>",
    eos_token="</s>",
    unk_token="<unk>",
)


def bound_family(family):
    """The family as a launched model holds it: one spec."""
    bound = family.copy()
    bound.model_specs = [family.model_specs[0]]
    return bound


def description(family) -> dict:
    return {**bound_family(family).to_description(), "model_engine": "Transformers", "replica": 1}


def renderer(family) -> PytorchChatModel:
    """The Transformers chat model's prompt building, without weights."""
    model = PytorchChatModel.__new__(PytorchChatModel)
    model.model_family = bound_family(family)
    model.model_uid = family.model_name
    model._tokenizer = TOKENIZER
    model.reasoning_parser = None
    model.tool_parser = None
    abilities = family.model_ability or []
    if "reasoning" in abilities or "hybrid" in abilities:
        model.prepare_parse_reasoning_content(True, enable_thinking=True)
    model.prepare_parse_tool_calls()
    return model


class StandInModel:
    """What `require_model` hands the handler: the actor's `chat`, rendering instead of generating."""

    def __init__(self, family):
        self.family = family
        self.uid = family.model_name.encode()

    async def is_vllm_backend(self) -> bool:
        return False

    async def is_transformers_batching_enabled(self) -> bool:
        return False

    async def chat(self, messages, generate_config, **_):
        try:
            if not self.family.chat_template:
                # The real engine loads the model's own template (or encoder) from its files.
                raise LookupError("no chat template in the catalog")
            prompt = renderer(self.family)._get_full_prompt(
                messages, generate_config.get("tools"), generate_config
            )
        except Exception as exc:
            TEMPLATE_ERRORS[generate_config.get("request_id") or "last"] = f"{type(exc).__name__}: {exc}"
            raise
        answer = {
            "id": "chatcmpl-conformance",
            "object": "chat.completion",
            "created": 0,
            "model": self.family.model_name,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": prompt}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        return json.dumps(answer).encode()


class StandInSupervisor:
    async def describe_model(self, uid):
        if uid not in FAMILIES:
            raise ValueError(f"Model not found in the model list, uid: {uid}")
        return description(FAMILIES[uid])

    async def get_model(self, uid):
        if uid not in FAMILIES:
            raise ValueError(f"Model not found in the model list, uid: {uid}")
        return StandInModel(FAMILIES[uid])


def server_api() -> restful_api.RESTfulAPI:
    api = restful_api.RESTfulAPI.__new__(restful_api.RESTfulAPI)
    api._advanced_auth_service = None
    supervisor = StandInSupervisor()

    async def get_supervisor_ref():
        return supervisor

    async def report_error_event(*_):
        return None

    api._get_supervisor_ref = get_supervisor_ref
    api._report_error_event = report_error_event
    return api


API = server_api()
CHAT_LOCK = threading.Lock()  # the template compile cache and TEMPLATE_ERRORS are shared


def handle_chat(raw: bytes) -> tuple[int, dict]:
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": [],
             "query_string": b"", "app": None}

    async def receive():
        return {"type": "http.request", "body": raw, "more_body": False}

    async def call():
        return await API.create_chat_completion(Request(scope, receive))

    with CHAT_LOCK:
        TEMPLATE_ERRORS.clear()
        try:
            response = asyncio.run(call())
        except HTTPException as exc:
            detail = exc.detail
            if exc.status_code == 500 and TEMPLATE_ERRORS:
                detail = "template: " + next(iter(TEMPLATE_ERRORS.values()))
            return exc.status_code, {"detail": detail}
        except Exception as exc:  # a validation error the real app turns into 422
            return 422, {"detail": f"{type(exc).__name__}: {exc}"}
    return response.status_code, json.loads(response.body)


def catalog() -> list[dict]:
    entries = []
    for name, family in FAMILIES.items():
        template = family.chat_template or ""
        entries.append(
            {
                "family": name,
                "description": description(family),
                "has_template": bool(family.chat_template),
                # Templates that render earlier reasoning read it from a message field.
                "reads_reasoning": "reasoning_content" in template or "message.thinking" in template,
            }
        )
    return entries


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *_):
        pass

    def _answer(self, status: int, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/catalog":
            return self._answer(200, catalog())
        uid = self.path.removeprefix("/v1/models/")
        if self.path.startswith("/v1/models/") and uid in FAMILIES:
            return self._answer(200, description(FAMILIES[uid]))
        return self._answer(400, {"detail": f"Model not found in the model list, uid: {uid}"})

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/v1/chat/completions":
            return self._answer(404, {"detail": "Not Found"})
        self._answer(*handle_chat(raw))


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"listening {server.server_address[1]}", flush=True)
    sys.stdin.read()  # the plugin side closes our stdin when it is done
    server.shutdown()


if __name__ == "__main__":
    main()

"""Drives the plugin as Dify's daemon does: `python -m main` over stdio, JSON lines.

Request payloads come from `tests/runtime/harness.py` (built and validated with the SDK's
own request models, so they are exactly what the daemon sends). The harness's reader
thread and per-session queues are not used here: they would add their own hand-off to
every line measured. Instead, one request at a time, `call()` writes a request line and
reads the plugin's stdout itself until that session's `end`, skipping heartbeats, logs
and blank lines, with a hook for the moment each chunk arrives.
"""

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from tests.runtime.harness import plugin_environment, request_line, request_payload

PLUGIN_ROOT = Path(__file__).resolve().parent.parent


class PluginError(RuntimeError):
    """The plugin answered a session with an error, or the process broke."""


class PluginProcess:
    def __init__(self, python: str = sys.executable, root: Path = PLUGIN_ROOT) -> None:
        env = plugin_environment("local")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [python, "-m", "main"],
            cwd=root,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=1 << 16,  # buffered: an unbuffered pipe makes readline() read byte by byte
        )
        self.heartbeat_after: float | None = None
        # What the daemon would have read: the longest line (it kills a plugin whose line
        # outgrows its buffer) and the bytes of all session lines.
        self.longest_line = 0
        self.session_bytes = 0

    # ---- lifecycle ---------------------------------------------------------------

    def wait_for_heartbeat(self, timeout: float = 60.0) -> float:
        """Seconds from spawn to the first heartbeat line."""
        deadline = time.monotonic() + timeout
        while self.heartbeat_after is None:
            if time.monotonic() > deadline:
                raise PluginError("no heartbeat from the plugin within %.0f s" % timeout)
            self._read_message()
        return self.heartbeat_after

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise PluginError("no VmRSS for the plugin process")

    def close(self) -> None:
        # The runtime does not exit on stdin EOF: it must be killed (as the daemon does).
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass

    def __enter__(self) -> "PluginProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- requests ----------------------------------------------------------------

    def call(self, data: dict, on_chunk: Callable[[dict], None] | None = None) -> list[dict]:
        """Sends one request; returns the `stream` payloads of its session.

        `on_chunk` is called as each one arrives (for time-to-first-chunk).
        """
        session_id = uuid.uuid4().hex
        self.proc.stdin.write(request_line(session_id, data).encode() + b"\n")
        self.proc.stdin.flush()
        chunks: list[dict] = []
        while True:
            message = self._read_message()
            if message is None or message.get("session_id") != session_id:
                continue
            kind = message["data"]["type"]
            if kind == "stream":
                payload = message["data"]["data"]
                chunks.append(payload)
                if on_chunk is not None:
                    on_chunk(payload)
            elif kind == "error":
                error = message["data"]["data"]
                raise PluginError(f"{error.get('error_type')}: {error.get('message')}")
            elif kind == "end":
                return chunks

    def reset_line_counts(self) -> None:
        self.longest_line = self.session_bytes = 0

    def _read_message(self) -> dict | None:
        line = self.proc.stdout.readline()
        if not line:
            raise PluginError(f"the plugin process ended (exit code {self.proc.poll()})")
        line = line.strip()
        self.longest_line = max(self.longest_line, len(line))
        if not line.startswith(b"{"):
            return None
        try:
            message = json.loads(line)
        except ValueError:
            return None
        if message.get("event") == "heartbeat" and self.heartbeat_after is None:
            self.heartbeat_after = time.perf_counter() - self.started
        if message.get("event") != "session":
            return None
        self.session_bytes += len(line)
        return message


# ---- request payloads: the SDK's own request models, via the runtime tests' harness -------


def invoke_llm_request(
    credentials: dict, model: str, messages: list[dict], parameters: dict, stream: bool
) -> dict:
    return request_payload(
        "invoke_llm", "llm", model, credentials,
        prompt_messages=messages, model_parameters=parameters, stop=None, tools=None, stream=stream,
    )


def llm_num_tokens_request(credentials: dict, model: str, messages: list[dict]) -> dict:
    return request_payload("get_llm_num_tokens", "llm", model, credentials, prompt_messages=messages, tools=None)


def embedding_schema_request(credentials: dict, model: str) -> dict:
    return request_payload("get_ai_model_schemas", "text-embedding", model, credentials)


def invoke_embedding_request(credentials: dict, model: str, texts: list[str], input_type: str = "document") -> dict:
    return request_payload("invoke_text_embedding", "text-embedding", model, credentials,
                           texts=texts, input_type=input_type)


def invoke_rerank_request(credentials: dict, model: str, query: str, docs: list[str]) -> dict:
    return request_payload("invoke_rerank", "rerank", model, credentials,
                           query=query, docs=docs, score_threshold=None, top_n=None)

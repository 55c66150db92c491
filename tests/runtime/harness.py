"""Stands in for the Dify plugin daemon: runs the plugin as Dify runs it and talks to it.

The daemon starts `<plugin>/.venv/bin/python -m main` with the plugin root as working
directory and `INSTALL_METHOD=local`, writes one JSON request per line on stdin and reads
the answers from stdout. `PluginProcess` does exactly that:

    with PluginProcess() as plugin:
        result = plugin.request("invoke_llm", "llm", "my-model", credentials,
                                prompt_messages=[...], model_parameters={}, stream=True)
        result.chunks, result.error

Remote debugging speaks the same session protocol over TCP; `SessionChannel` is the part
both share (see `debug_server.py`). Requests are built from the SDK's own request models,
so a payload the SDK would reject fails here first.
"""

import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dify_plugin.core.entities.plugin.request import (
    ModelActions,
    ModelGetAIModelSchemas,
    ModelGetLLMNumTokens,
    ModelGetTextEmbeddingNumTokens,
    ModelGetTTSVoices,
    ModelInvokeLLMRequest,
    ModelInvokeRerankRequest,
    ModelInvokeSpeech2TextRequest,
    ModelInvokeTextEmbeddingRequest,
    ModelInvokeTTSRequest,
    ModelValidateModelCredentialsRequest,
)
from pydantic import BaseModel

REPO_ROOT = Path(__file__).resolve().parents[2]
PROVIDER = "xinference"
USER_ID = "harness-user"
STARTUP_TIMEOUT = 60.0  # first heartbeat; a cold interpreter with gevent takes a few seconds
READ_TIMEOUT = 60.0  # the longest silence allowed inside one session
# The daemon reads the plugin's stdout with a bufio.Scanner of this maximum token size
# (PLUGIN_RUNTIME_MAX_BUFFER_SIZE): a line that does not fit, newline included, ends the
# scanner, and the daemon kills the plugin. Sessions then never end.
DAEMON_LINE_LIMIT_BYTES = 5_242_880

REQUEST_MODELS: dict[str, type[BaseModel]] = {
    ModelActions.InvokeLLM.value: ModelInvokeLLMRequest,
    ModelActions.GetLLMNumTokens.value: ModelGetLLMNumTokens,
    ModelActions.ValidateModelCredentials.value: ModelValidateModelCredentialsRequest,
    ModelActions.GetAIModelSchemas.value: ModelGetAIModelSchemas,
    ModelActions.InvokeTextEmbedding.value: ModelInvokeTextEmbeddingRequest,
    ModelActions.GetTextEmbeddingNumTokens.value: ModelGetTextEmbeddingNumTokens,
    ModelActions.InvokeRerank.value: ModelInvokeRerankRequest,
    ModelActions.InvokeSpeech2Text.value: ModelInvokeSpeech2TextRequest,
    ModelActions.InvokeTTS.value: ModelInvokeTTSRequest,
    ModelActions.GetTTSVoices.value: ModelGetTTSVoices,
}


class HarnessError(AssertionError):
    """The plugin did not behave as the daemon expects (no heartbeat, silence, died)."""


@dataclass
class SessionResult:
    """Everything one session answered: the `stream` payloads in order, and the error if any."""

    chunks: list[dict] = field(default_factory=list)
    error: dict | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def last(self) -> dict:
        if not self.chunks:
            raise HarnessError(f"the session sent no stream chunk (error: {self.error})")
        return self.chunks[-1]


# Strings the daemon's request structs mark `validate:"required"` (pkg/entities/requests/model.go)
# though the SDK's models accept them empty: the daemon answers such a request with
# PluginDaemonBadRequestError and never passes it on, so the stand-in refuses it too.
DAEMON_REQUIRED_STRINGS = {
    ModelActions.InvokeTTS.value: ("content_text", "voice", "tenant_id"),
    ModelActions.InvokeRerank.value: ("query",),
    ModelActions.InvokeSpeech2Text.value: ("file",),
}


def request_payload(action: str, model_type: str, model: str, credentials: Mapping, **fields) -> dict:
    """The `data` of a request line, validated and serialised by the SDK's request model."""
    try:
        request_model = REQUEST_MODELS[action]
    except KeyError:
        raise ValueError(f"the harness knows no request model for action {action!r}") from None
    for name in DAEMON_REQUIRED_STRINGS.get(action, ()):
        if not fields.get(name):
            raise ValueError(f"the daemon refuses {action} without {name!r} (PluginDaemonBadRequestError)")
    request = request_model(
        user_id=USER_ID,
        provider=PROVIDER,
        model_type=model_type,
        model=model,
        credentials=dict(credentials),
        **fields,
    )
    return request.model_dump(mode="json")


def request_line(session_id: str, data: dict) -> str:
    """One request as the daemon writes it: a single JSON line."""
    return json.dumps(
        {
            "session_id": session_id,
            "conversation_id": None,
            "message_id": None,
            "app_id": None,
            "endpoint_id": None,
            "context": None,
            "event": "request",
            "data": data,
        }
    )


def parse_line(raw: str) -> dict | None:
    """A JSON object from an output line; None for blank lines and anything that is not JSON."""
    raw = raw.strip()
    if not raw.startswith("{"):
        return None
    try:
        parsed = json.loads(raw)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


class SessionChannel:
    """The daemon's side of the session protocol, over any line transport.

    A subclass feeds every line the plugin writes to `_receive_line` (from a reader
    thread) and implements `_write_line`. Session events are routed to one queue per
    session; heartbeats, logs and other messages are kept for inspection.
    """

    def __init__(self) -> None:
        self.logs: list[dict] = []
        self.other_messages: list[dict] = []
        self.heartbeat = threading.Event()
        self._sessions: dict[str, queue.Queue] = {}
        self._sessions_lock = threading.Lock()
        self._closed = threading.Event()
        self.close_reason = "the plugin's output closed"

    # ---- what the plugin wrote --------------------------------------------------------

    def _receive_line(self, raw: str) -> None:
        message = parse_line(raw)
        if message is None:
            return
        event = message.get("event")
        if event == "heartbeat":
            self.heartbeat.set()
        elif event == "log":
            self.logs.append(message.get("data") or {})
        elif event == "session":
            self._session_queue(str(message.get("session_id"))).put(message.get("data") or {})
        else:
            self.other_messages.append(message)

    def _session_queue(self, session_id: str) -> queue.Queue:
        with self._sessions_lock:
            return self._sessions.setdefault(session_id, queue.Queue())

    def _transport_closed(self) -> None:
        self._closed.set()

    # ---- what the daemon writes -------------------------------------------------------

    def _write_line(self, line: str) -> None:
        raise NotImplementedError

    def send(self, action: str, model_type: str, model: str, credentials: Mapping, **fields) -> str:
        """Sends one request and returns its session id."""
        session_id = str(uuid.uuid4())
        self._session_queue(session_id)
        payload = request_payload(action, model_type, model, credentials, **fields)
        self._write_line(request_line(session_id, payload))
        return session_id

    def events(self, session_id: str, timeout: float = READ_TIMEOUT) -> Iterator[tuple[str, dict]]:
        """Yields `(type, data)` for each `stream`/`error` event of a session until `end`.

        Raises `HarnessError` when the plugin stays silent for `timeout` seconds or its
        transport closes first.
        """
        events = self._session_queue(session_id)
        while True:
            event = self._next_event(events, timeout, session_id)
            kind = event.get("type")
            if kind == "end":
                with self._sessions_lock:
                    self._sessions.pop(session_id, None)
                return
            yield kind, event.get("data") or {}

    def _next_event(self, events: queue.Queue, timeout: float, session_id: str) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return events.get(timeout=0.2)
            except queue.Empty:
                pass
            if self._closed.is_set() and events.empty():
                raise HarnessError(f"{self.close_reason} before session {session_id} ended")
            if time.monotonic() > deadline:
                raise HarnessError(f"no event for session {session_id} within {timeout:g} s")

    def collect(self, session_id: str, timeout: float = READ_TIMEOUT) -> SessionResult:
        result = SessionResult()
        for kind, data in self.events(session_id, timeout):
            if kind == "error":
                result.error = data
            else:
                result.chunks.append(data)
        return result

    def request(
        self,
        action: str,
        model_type: str,
        model: str,
        credentials: Mapping,
        timeout: float = READ_TIMEOUT,
        **fields,
    ) -> SessionResult:
        """Sends one request and waits for its whole session."""
        session_id = self.send(action, model_type, model, credentials, **fields)
        return self.collect(session_id, timeout)


# ---- the plugin as a process ------------------------------------------------------------


def plugin_environment(install_method: str | None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment the daemon gives a plugin: ours without any runtime settings.

    `install_method=None` leaves INSTALL_METHOD unset, so a `.env` file in the plugin
    root decides (the SDK reads it; real environment variables would win over it).
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("REMOTE_INSTALL", "SERVERLESS_")) and name != "INSTALL_METHOD"
    }
    if install_method:
        env["INSTALL_METHOD"] = install_method
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class OutputPump:
    """Reads one stream of a child process line by line on a thread, keeping everything."""

    def __init__(self, stream, on_line: Callable[[str], None] | None = None, on_close=None) -> None:
        self.lines: list[str] = []
        self._stream = stream
        self._on_line = on_line
        self._on_close = on_close
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            for raw in iter(self._stream.readline, ""):
                self.lines.append(raw)
                if self._on_line:
                    self._on_line(raw)
        except (OSError, ValueError):
            pass
        finally:
            if self._on_close:
                self._on_close()

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


def start_plugin(
    plugin_root: Path,
    python: Path | str,
    install_method: str | None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen:
    """Starts `<python> -m main` the way the daemon does."""
    return subprocess.Popen(
        [str(python), "-m", "main"],
        cwd=str(plugin_root),
        env=plugin_environment(install_method, env),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
        bufsize=1,
    )


class RunningPlugin:
    """`<python> -m main` in a plugin root, with everything it writes kept.

    `on_stdout_line`/`on_stdout_close` let a caller follow stdout as it arrives.
    """

    def __init__(
        self,
        plugin_root: Path | str,
        python: Path | str,
        install_method: str | None,
        env: Mapping[str, str] | None = None,
        on_stdout_line: Callable[[str], None] | None = None,
        on_stdout_close: Callable[[], None] | None = None,
    ) -> None:
        self.process = start_plugin(Path(plugin_root), python, install_method, env)
        self.stdout = OutputPump(self.process.stdout, on_stdout_line, on_stdout_close)
        self.stderr = OutputPump(self.process.stderr)

    @property
    def output(self) -> str:
        return self.stdout.text + self.stderr.text

    def transcript(self) -> str:
        """Everything the process wrote, stdout then stderr, for failure messages."""
        return f"--- stdout ---\n{self.stdout.text}\n--- stderr ---\n{self.stderr.text}"

    def stop(self) -> None:
        """The plugin does not exit on stdin EOF: the daemon kills it, and so do we.

        Its output is drained first, so nothing it wrote is lost.
        """
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for pump in (self.stdout, self.stderr):
            pump.join(5)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            try:
                stream.close()
            except OSError:
                pass

    def __enter__(self) -> "RunningPlugin":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


class PluginProcess(SessionChannel):
    """The plugin started over stdio, as the daemon's local runtime starts it.

    `plugin_root` is the folder holding manifest.yaml and main.py; `python` the
    interpreter of that plugin's environment (default: the one running the tests).
    Returns once the first heartbeat is in, the daemon's sign that the plugin listens.
    """

    def __init__(
        self,
        plugin_root: Path | str = REPO_ROOT,
        python: Path | str | None = None,
        env: Mapping[str, str] | None = None,
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        super().__init__()
        self.manifest: dict | None = None
        self.longest_line_bytes = 0
        self.killed_for_line_limit = False
        self._write_lock = threading.Lock()
        self.run = RunningPlugin(
            plugin_root, python or sys.executable, "local", env, self._receive_line, self._transport_closed
        )
        self.process, self.stdout, self.stderr = self.run.process, self.run.stdout, self.run.stderr
        try:
            self._wait_for_heartbeat(startup_timeout)
        except BaseException:
            self.stop()
            raise

    def _receive_line(self, raw: str) -> None:
        if self.killed_for_line_limit:
            return  # the daemon's scanner has stopped: nothing after that line is read
        size = len(raw.encode("utf-8", errors="surrogateescape"))
        if size > DAEMON_LINE_LIMIT_BYTES:
            self.killed_for_line_limit = True
            # As the daemon: the scanner stops ("bufio.Scanner: token too long"), the plugin is killed.
            self.close_reason = (
                f"the daemon would have killed the plugin: it wrote a stdout line of {size:,} bytes, "
                f"over PLUGIN_RUNTIME_MAX_BUFFER_SIZE ({DAEMON_LINE_LIMIT_BYTES:,})"
            )
            self.longest_line_bytes = max(self.longest_line_bytes, size)
            if getattr(self, "process", None) is not None:
                self.process.kill()
            self._transport_closed()
            return
        self.longest_line_bytes = max(self.longest_line_bytes, size)
        message = parse_line(raw)
        # The first thing the plugin prints is its manifest, a bare JSON object.
        if self.manifest is None and message is not None and "event" not in message:
            self.manifest = message
            return
        super()._receive_line(raw)

    def _wait_for_heartbeat(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.heartbeat.wait(0.2):
            if self.process.poll() is not None:
                reason = f"exited with code {self.process.returncode} before its first heartbeat"
            elif time.monotonic() > deadline:
                reason = f"sent no heartbeat within {timeout:g} s"
            else:
                continue
            self.stop()
            raise HarnessError(f"the plugin {reason}.\n{self.run.transcript()[-4000:]}")

    def _write_line(self, line: str) -> None:
        if self.process.poll() is not None:
            raise HarnessError(f"the plugin has exited (code {self.process.returncode})")
        with self._write_lock:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()

    def stop(self) -> None:
        self.run.stop()

    def __enter__(self) -> "PluginProcess":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


# ---- installing a package ------------------------------------------------------------------

VENV_TIMEOUT = 900  # pip downloads the SDK's dependencies when its cache is cold


def base_python() -> str:
    """The interpreter our venv was made from (a venv's own python would nest venvs)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def unpack_package(package: Path, destination: Path) -> Path:
    """The package's files in a new, empty folder."""
    destination.mkdir(parents=True)
    with zipfile.ZipFile(package) as archive:
        archive.extractall(destination)
    return destination


def install_package(package: Path, destination: Path, python: str | None = None) -> Path:
    """Installs a .difypkg as the daemon does: unzip into an empty folder, then a `.venv`
    there from the package's own requirements.txt. Returns the venv's python.

    The daemon uses uv; pip resolves the same requirement lines. Raises `HarnessError`
    with pip's output when the install fails.
    """
    unpack_package(package, destination)
    venv_python = destination / ".venv" / "bin" / "python"
    steps = [
        [python or base_python(), "-m", "venv", str(destination / ".venv")],
        [str(venv_python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", "requirements.txt"],
    ]
    for step in steps:
        done = subprocess.run(step, cwd=destination, capture_output=True, text=True, timeout=VENV_TIMEOUT)
        if done.returncode != 0:
            raise HarnessError(f"{' '.join(step)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return venv_python


# ---- small helpers -------------------------------------------------------------------------


def unused_port() -> int:
    """A loopback port nothing listens on (the OS just handed it out and took it back)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---- reading answers --------------------------------------------------------------------


def llm_text(chunks: Iterable[dict]) -> str:
    """The assistant text of `invoke_llm` chunks, joined in order."""
    return "".join(chunk["delta"]["message"].get("content") or "" for chunk in chunks)

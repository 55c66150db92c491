"""Dify's API server's side of the plugin daemon: the same HTTP calls, nothing else.

Mirrors `api/core/plugin/impl/*.py` in langgenius/dify: `X-Api-Key` on every call, the
package uploaded as multipart `dify_pkg`, installs by unique identifier and polled as a
task, model calls as `POST /plugin/{tenant}/dispatch/<route>` with `X-Plugin-ID` and a
`{"user_id", "data"}` body, answered as server-sent events whose `data:` lines are
`{"code", "message", "data"}`. Every dispatch is printed, request and answer, so a run
with `-s` (or CI's output) shows what went into the daemon and what came back.
"""

import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests

USER_ID = "daemon-tier-user"
INSTALL_TIMEOUT = 900.0  # the first install downloads the SDK's dependencies into uv's cache
DISPATCH_TIMEOUT = 300.0
SHOWN_CHARACTERS = 1200


class DaemonError(AssertionError):
    """The daemon answered a management call with an error."""


@dataclass
class DispatchResult:
    """One dispatch: the `data` of each successful event in order, and the error event if any."""

    chunks: list = field(default_factory=list)
    error: dict | None = None
    longest_line_bytes: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def daemon_error_type(self) -> str | None:
        """The daemon's class: `PluginInvokeError` when the plugin raised."""
        return self._outer().get("error_type")

    @property
    def error_type(self) -> str | None:
        """The class Dify's API server raises: for a plugin's error, the plugin's exception class
        (api/core/plugin/impl/base.py reads it from inside the daemon's message)."""
        if self.daemon_error_type == "PluginInvokeError":
            return self._inner().get("error_type")
        return self.daemon_error_type

    @property
    def error_message(self) -> str:
        inner = self._inner()
        return str(inner.get("message") or self._outer().get("message") or "")

    def _outer(self) -> dict:
        if self.error is None:
            return {}
        try:
            return json.loads(self.error["message"])
        except (ValueError, TypeError, KeyError):
            return {"message": str(self.error.get("message"))}

    def _inner(self) -> dict:
        try:
            inner = json.loads(self._outer().get("message") or "")
        except (ValueError, TypeError):
            return {}
        return inner if isinstance(inner, dict) else {}


def redacted(value, secrets: tuple[str, ...]):
    """`value` as JSON-able data with every secret replaced, for printing."""
    text = json.dumps(value)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<api key>")
    return json.loads(text)


def summarised(value):
    """Long lists of numbers (vectors) shown as their length; long strings cut."""
    if isinstance(value, list) and len(value) > 8 and all(isinstance(item, int | float) for item in value):
        return f"<{len(value)} numbers: {value[:3]}...>"
    if isinstance(value, list):
        shown = [summarised(item) for item in value[:6]]
        return shown + ([f"<{len(value) - 6} more>"] if len(value) > 6 else [])
    if isinstance(value, dict):
        return {key: summarised(item) for key, item in value.items()}
    if isinstance(value, str) and len(value) > 300:
        return value[:300] + f"...<{len(value)} characters>"
    return value


def show(label: str, value, secrets: tuple[str, ...] = ()) -> None:
    text = json.dumps(summarised(redacted(value, secrets)), ensure_ascii=False)
    if len(text) > SHOWN_CHARACTERS:
        text = text[:SHOWN_CHARACTERS] + "..."
    print(f"  {label} {text}")


class DaemonClient:
    def __init__(self, url: str, server_key: str, tenant_id: str | None = None) -> None:
        self.url = url
        self.tenant_id = tenant_id or str(uuid.uuid4())  # a Postgres uuid column
        self.session = requests.Session()
        self.session.headers["X-Api-Key"] = server_key
        self.secrets: tuple[str, ...] = ()

    def _path(self, route: str) -> str:
        return f"{self.url}/plugin/{self.tenant_id}/{route}"

    def _management(self, method: str, route: str, **kwargs) -> dict:
        response = self.session.request(method, self._path(route), timeout=120, **kwargs)
        response.raise_for_status()
        body = response.json()
        if body.get("code") != 0:
            raise DaemonError(f"{method} {route}: {body}")
        return body.get("data")

    # ---- installing -------------------------------------------------------------------

    def upload(self, package: Path) -> str:
        with open(package, "rb") as file:
            data = self._management(
                "POST",
                "management/install/upload/package",
                files={"dify_pkg": (package.name, file, "application/octet-stream")},
                data={"verify_signature": "false"},
            )
        return data["unique_identifier"]

    def install(self, *identifiers: str, timeout: float = INSTALL_TIMEOUT) -> dict:
        """Installs uploaded packages (several in one task: the daemon installs them side by side)."""
        started = self._management(
            "POST",
            "management/install/identifiers",
            json={"plugin_unique_identifiers": list(identifiers), "source": "package", "metas": [{}] * len(identifiers)},
        )
        if started.get("all_installed"):
            return {"status": "success", "already_installed": True}
        deadline = time.monotonic() + timeout
        while True:
            task = self._management("GET", f"management/install/tasks/{started['task_id']}")
            if task["status"] in ("success", "failed"):
                return task
            if time.monotonic() > deadline:
                raise DaemonError(f"the install task did not finish within {timeout:g} s: {task}")
            time.sleep(1)

    def installed_plugins(self) -> list[dict]:
        listed = self._management("GET", "management/list", params={"page": 1, "page_size": 100}) or {}
        return listed.get("list") or []

    def model_providers(self) -> list[dict]:
        return self._management("GET", "management/models", params={"page": 1, "page_size": 256}) or []

    def debugging_key(self) -> str:
        return self._management("POST", "debugging/key")["key"]

    # ---- calling a model --------------------------------------------------------------

    def post_dispatch(self, plugin_id: str, route: str, data: dict, timeout: float = DISPATCH_TIMEOUT) -> requests.Response:
        """Sends one dispatch as Dify's API server does; its server-sent events, still unread."""
        return self.session.post(
            self._path(f"dispatch/{route}"),
            json={"user_id": USER_ID, "data": data},
            headers={"X-Plugin-ID": plugin_id},
            stream=True,
            timeout=timeout,
        )

    def dispatch(self, plugin_id: str, route: str, data: dict, timeout: float = DISPATCH_TIMEOUT) -> DispatchResult:
        print(f"\n>>> POST /plugin/<tenant>/dispatch/{route}  X-Plugin-ID: {plugin_id}")
        show("request:", {"user_id": USER_ID, "data": data}, self.secrets)
        response = self.post_dispatch(plugin_id, route, data, timeout)
        result = DispatchResult()
        if response.status_code != 200:
            result.error = {"code": response.status_code, "message": response.text}
            show(f"<<< HTTP {response.status_code}:", response.text, self.secrets)
            return result
        for raw in response.iter_lines(chunk_size=1 << 20):
            result.longest_line_bytes = max(result.longest_line_bytes, len(raw))
            if not raw.startswith(b"data:"):
                continue
            event = json.loads(raw[len(b"data:") :])
            if event.get("code") == 0:
                result.chunks.append(event.get("data"))
                show("<<< chunk:", event.get("data"), self.secrets)
            else:
                result.error = event
                show("<<< error:", event, self.secrets)
        return result

"""The daemon tier: the package built by scripts/package, installed into the real Dify
plugin daemon, called only through the HTTP API Dify's API server uses.

One daemon (with its PostgreSQL and Redis) and one install serve the whole session. The
tier fails, rather than skips, when its prerequisites are missing: `scripts/test daemon`
and CI run it only where `scripts/tools` found the binaries.

No test relies on the order the tests run in (pytest-randomly shuffles them): what must
come after every call, the check that no API key reached a log, is the finalizer of a
session fixture, and the test that gets the plugin killed waits until it is back.
"""

import time
from pathlib import Path

import pytest

from tests.daemon.client import DISPATCH_TIMEOUT, DaemonClient, DispatchResult
from tests.daemon.services import STATE_ROOT, DaemonStack, missing_prerequisites, package
from tests.daemon.stub_models import ModelsStub
from tests.runtime.conftest import STUB_API_KEY
from tests.runtime.harness import REPO_ROOT

PROVIDER = "xinference"
TIMINGS: dict[str, float] = {}
# Every API key the tier sends, for the check that none reaches a log.
SECRETS_USED: set[str] = {STUB_API_KEY}
LONGEST_LINES: dict[str, int] = {}
# Answers in which the plugin raised: each one must have left its error in the daemon's log.
PLUGIN_ERRORS_SEEN: list[str] = []


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.daemon)


@pytest.fixture(scope="session")
def daemon_stack():
    reasons = missing_prerequisites()
    if reasons:
        pytest.fail("the daemon tier cannot run here:\n  " + "\n  ".join(reasons), pytrace=False)
    stack = DaemonStack.create()
    try:
        stack.start()
        TIMINGS.update({f"start {name}": seconds for name, seconds in stack.timings.items()})
        yield stack
    finally:
        stack.stop()


def key_fragments(key: str) -> list[str]:
    return [key, key[:12], key[-12:]]


@pytest.fixture(scope="session", autouse=True)
def no_api_key_in_any_log(daemon_stack):
    """After the session's last call, whatever ran and in whatever order: no API key, whole
    or in part, in what the daemon logged (it holds the plugin's own logs and stderr too)."""
    yield
    logs = {path: path.read_text(errors="replace") for path in (STATE_ROOT / "run").rglob("*.log")}
    daemon_log = logs[daemon_stack.daemon.log]
    if PLUGIN_ERRORS_SEEN:
        # The log does hold the plugin's errors and log lines: a check of an empty log would prove nothing.
        assert "plugin returned error response" in daemon_log and "plugin instance log" in daemon_log
    for key in SECRETS_USED:
        for path, text in logs.items():
            assert not [fragment for fragment in key_fragments(key) if fragment in text], f"{path} holds part of an API key"
    print(f"\nno API key in {len(logs)} logs ({sum(map(len, logs.values())):,} characters, "
          f"{len(PLUGIN_ERRORS_SEEN)} plugin errors) for {len(SECRETS_USED)} keys")  # fmt: skip


@pytest.fixture(scope="session")
def built_package(tmp_path_factory) -> tuple[Path, str]:
    """The .difypkg from scripts/package, and the unique identifier it printed."""
    output = tmp_path_factory.mktemp("dist") / "xinference.difypkg"
    started = time.monotonic()
    identifier = package(REPO_ROOT, output)
    TIMINGS["scripts/package"] = time.monotonic() - started
    return output, identifier


@pytest.fixture(scope="session")
def client(daemon_stack) -> DaemonClient:
    api = DaemonClient(daemon_stack.daemon.url, daemon_stack.daemon.server_key)
    api.secrets = (STUB_API_KEY,)
    return api


@pytest.fixture
def debug_client(daemon_stack) -> DaemonClient:
    """A tenant of its own, with nothing installed: what it lists comes from remote debugging."""
    api = DaemonClient(daemon_stack.daemon.url, daemon_stack.daemon.server_key)
    api.secrets = (STUB_API_KEY,)
    return api


@pytest.fixture(scope="session")
def installed(client, built_package) -> dict:
    """Uploads and installs the package as Dify's console does; the install task's result."""
    package, identifier = built_package
    started = time.monotonic()
    uploaded = client.upload(package)
    TIMINGS["upload"] = time.monotonic() - started
    started = time.monotonic()
    task = client.install(uploaded)
    TIMINGS["install (uv venv + dependencies + start)"] = time.monotonic() - started
    assert task["status"] == "success", task
    return {"identifier": uploaded, "printed_identifier": identifier, "task": task}


@pytest.fixture(scope="session")
def plugin_id(installed) -> str:
    author_name, _, _ = installed["identifier"].partition(":")
    return author_name


@pytest.fixture(scope="session")
def stub():
    server = ModelsStub(api_key=STUB_API_KEY)
    yield server
    server.close()


@pytest.fixture
def call_with_timeout(client, plugin_id):
    """`call_with_timeout(seconds)(route, model_type, credentials, **fields)`"""

    def with_timeout(timeout: float):
        def dispatch(route: str, model_type: str, credentials: dict, model: str = "my-model", **fields) -> DispatchResult:
            data = {"provider": PROVIDER, "model_type": model_type, "model": model, "credentials": credentials, **fields}
            result = client.dispatch(plugin_id, route, data, timeout=timeout)
            if result.daemon_error_type == "PluginInvokeError":
                PLUGIN_ERRORS_SEEN.append(route)
            return result

        return dispatch

    return with_timeout


@pytest.fixture
def call(call_with_timeout):
    """`call(route, model_type, credentials, **fields)`: one dispatch, as Dify's API server sends it."""
    return call_with_timeout(DISPATCH_TIMEOUT)


def stub_credentials(stub, uid: str, **extra) -> dict:
    """The credential form as Dify stores it: every value a string."""
    return {"server_url": stub.url, "model_uid": uid, "api_key": STUB_API_KEY, "invoke_timeout": "30",
            "max_retries": "0", **extra}  # fmt: skip


def pytest_terminal_summary(terminalreporter):
    if not TIMINGS and not LONGEST_LINES:
        return
    terminalreporter.section("daemon tier")
    for what, seconds in TIMINGS.items():
        terminalreporter.write_line(f"{what:<45} {seconds:7.1f} s")
    for what, size in LONGEST_LINES.items():
        terminalreporter.write_line(f"longest answer line, {what:<24} {size:>9,} bytes (daemon limit 5,242,880)")
    terminalreporter.write_line(f"daemon state and logs: {STATE_ROOT}")

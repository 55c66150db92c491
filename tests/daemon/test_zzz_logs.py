"""After every call of the tier (errors included): no API key, whole or in part, in what
the daemon logged, which holds the plugin's own logs and stderr too."""

from tests.daemon.conftest import SECRETS_USED
from tests.daemon.services import STATE_ROOT


def fragments(key: str) -> list[str]:
    return [key, key[:12], key[-12:]]


def test_no_api_key_in_the_daemon_or_plugin_logs(daemon_stack):
    logs = {path: path.read_text(errors="replace") for path in (STATE_ROOT / "run").rglob("*.log")}
    daemon_log = logs[daemon_stack.daemon.log]
    # The log does hold the plugin's errors and log lines: a check of an empty log proves nothing.
    assert "plugin returned error response" in daemon_log and "plugin instance log" in daemon_log
    for key in SECRETS_USED:
        for path, text in logs.items():
            leaked = [fragment for fragment in fragments(key) if fragment in text]
            assert not leaked, f"{path} holds part of an API key"
    print(f"\nchecked {len(logs)} logs ({sum(map(len, logs.values())):,} characters) for {len(SECRETS_USED)} keys")

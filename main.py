import logging
import os
import sys

from dify_plugin import DifyPluginEnv, Plugin
from dify_plugin.config.config import InstallMethod

from models.common.credentials import MAX_INVOKE_TIMEOUT


class RemoteDebuggingLog(logging.Filter):
    """Remote debugging: the SDK retries a refused key forever, logging a traceback for each
    failed read and write. A refused key ends the plugin with one line; other connection
    errors are shown once each, without the traceback."""

    # The daemon answers a wrong key with "handshake failed, invalid key" and hangs up. When the
    # SDK's writer hits the closed socket before its reader got that line, it reconnects and
    # writes again, forever, without ever reading the refusal: write failures in a row before
    # any request arrived mean the same refusal.
    WRITE_FAILURES_MEANING_REFUSAL = 3

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()
        self.write_failures = 0
        self.served = False

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Received event"):
            self.served = True
        elif message == "Failed to write data" and not self.served:
            self.write_failures += 1
        if "handshake failed, invalid key" in message or self.write_failures >= self.WRITE_FAILURES_MEANING_REFUSAL:
            sys.stderr.write(
                "remote debugging: Dify refused REMOTE_INSTALL_KEY (handshake failed, invalid key). "
                "Copy the current key from Dify's Plugins page (Debugging) into .env and start again.\n"
            )
            sys.stderr.flush()
            os._exit(1)
        record.exc_info, record.exc_text = None, None
        first_time = message not in self.seen
        self.seen.add(message)
        return first_time


# Before the plugin starts: in remote mode it connects and writes while being constructed.
logging.getLogger("dify_plugin.core.server.tcp.request_reader").addFilter(RemoteDebuggingLog())

# Xinference answers can take minutes (long generations, models that are still loading);
# the per-request timeout is the user's "invoke timeout" credential. The daemon cuts every
# request at PLUGIN_MAX_EXECUTION_TIMEOUT (600 s by default), and so does the plugin.
config = DifyPluginEnv(MAX_REQUEST_TIMEOUT=int(MAX_INVOKE_TIMEOUT))
plugin = Plugin(config)


def mode_hint(install_method: InstallMethod) -> str | None:
    """One line for a person who started the plugin by hand; the daemon never sees it."""
    if install_method == InstallMethod.Local:
        return (
            "main: local mode (INSTALL_METHOD=local): waiting for the Dify plugin daemon's requests on stdin. "
            "For remote debugging, copy .env.example to .env, fill in REMOTE_INSTALL_URL and "
            "REMOTE_INSTALL_KEY from Dify (Plugins > debug icon) and start again. Ctrl+C stops."
        )
    if install_method == InstallMethod.Serverless:
        return (
            f"main: serverless mode (INSTALL_METHOD=serverless): serving HTTP on "
            f"{config.SERVERLESS_HOST}:{config.SERVERLESS_PORT}. "
            "For remote debugging, set INSTALL_METHOD=remote in .env (see .env.example). Ctrl+C stops."
        )
    return None


if __name__ == "__main__":
    # stdout carries the daemon's protocol, so the hint goes to stderr, and only to a person:
    # the daemon always starts the plugin with a pipe on stdin.
    hint = mode_hint(config.INSTALL_METHOD) if sys.stdin.isatty() else None
    if hint:
        print(hint, file=sys.stderr, flush=True)
    plugin.run()

import sys

from dify_plugin import DifyPluginEnv, Plugin
from dify_plugin.config.config import InstallMethod

# Xinference answers can take minutes (long generations, models that are still loading);
# the per-request timeout is the user's "invoke timeout" credential, so the runtime's
# own limit must not cut a request short first.
config = DifyPluginEnv(MAX_REQUEST_TIMEOUT=1200)
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

"""Remote debugging against the real daemon, as the README tells a developer to do it: a
debugging key from the daemon's own API, `.env` in the plugin folder, `python -m main`."""

import shutil
import time

import pytest

from tests.daemon.conftest import stub_credentials
from tests.runtime.harness import REPO_ROOT, RunningPlugin
from tests.runtime.stub_xinference import ANSWER_PIECES, CHAT_UID

CONNECT_TIMEOUT = 60.0
NOT_THE_PLUGIN = shutil.ignore_patterns(".venv", ".git", "dist", ".testbed", ".daemon", "bench",
                                        "__pycache__", ".env", "tests", "scripts")  # fmt: skip


def plugin_with_dotenv(tmp_path, daemon_stack, key: str):
    root = tmp_path / "plugin"
    shutil.copytree(REPO_ROOT, root, ignore=NOT_THE_PLUGIN)
    (root / ".env").write_text(
        f"INSTALL_METHOD=remote\nREMOTE_INSTALL_URL=127.0.0.1:{daemon_stack.daemon.debugging_port}\nREMOTE_INSTALL_KEY={key}\n"
    )
    return RunningPlugin(root, REPO_ROOT / ".venv" / "bin" / "python", install_method=None)



def test_a_key_from_the_daemon_gets_the_plugin_listed_and_invocable(daemon_stack, debug_client, stub, tmp_path):
    key = debug_client.debugging_key()
    plugin = plugin_with_dotenv(tmp_path, daemon_stack, key)
    try:
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while not (listed := debug_client.model_providers()):
            if plugin.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the debugged plugin never got listed:\n{plugin.output[-3000:]}")
            time.sleep(0.5)
        [provider] = listed
        print(f"\nlisted while debugging: {provider['plugin_unique_identifier']}")
        assert provider["provider"] == "xinference"

        result = debug_client.dispatch(provider["plugin_id"], "llm/invoke", {
            "provider": "xinference", "model_type": "llm", "model": "my-model",
            "credentials": stub_credentials(stub, CHAT_UID), "prompt_messages": [{"role": "user", "content": "Hi"}],
            "model_parameters": {}, "tools": [], "stop": [], "stream": True,
        })  # fmt: skip

        assert result.ok, result.error
        assert "".join(chunk["delta"]["message"]["content"] for chunk in result.chunks) == "".join(ANSWER_PIECES)
    finally:
        plugin.stop()


def test_a_wrong_key_gives_one_clear_line_and_ends_the_plugin(daemon_stack, tmp_path):
    plugin = plugin_with_dotenv(tmp_path, daemon_stack, "00000000-0000-4000-8000-000000000000")
    try:
        plugin.process.wait(timeout=CONNECT_TIMEOUT)
    finally:
        plugin.stop()
    output = plugin.stderr.text
    print(f"\nthe plugin's stderr ({len(output)} bytes):\n{output}")
    assert plugin.process.returncode == 1
    assert "Dify refused REMOTE_INSTALL_KEY (handshake failed, invalid key)" in output
    assert "Traceback" not in output and len(output.splitlines()) <= 5

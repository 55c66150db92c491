"""Remote debugging as a developer uses it: the plugin dials a Dify debug server over TCP.

The stand-in in `debug_server.py` plays the daemon's part on loopback: it checks the
handshake key, collects the declarations and assets, then sends a real request.
"""

import shutil
import time

import pytest
import yaml

from tests.runtime.conftest import STUB_API_KEY
from tests.runtime.debug_server import DebugServer
from tests.runtime.harness import HarnessError, RunningPlugin, llm_text
from tests.runtime.stub_xinference import ANSWER_PIECES

DEBUG_KEY = "a1b2c3d4-0000-4000-8000-debugkey0001"
CONNECT_TIMEOUT = 60.0
# Everything in a checkout that is not the plugin: the copy for the `.env` test skips it.
NOT_THE_PLUGIN = shutil.ignore_patterns(".venv", ".git", "dist", ".testbed", "bench", "__pycache__", ".env")


def remote_plugin(target, plugin_root=None, install_method="remote", env=None) -> RunningPlugin:
    return RunningPlugin(plugin_root or target.root, target.python, install_method, env)


def remote_env(server: DebugServer, key: str) -> dict:
    return {"REMOTE_INSTALL_URL": server.address, "REMOTE_INSTALL_KEY": key}


def assert_registered_like_dify_expects(connection, target) -> None:
    """Handshake, manifest, model declaration for every declared type, and the assets."""
    assert connection.handshake == {"type": "handshake", "data": {"key": DEBUG_KEY}}

    manifest_file = yaml.safe_load((target.root / "manifest.yaml").read_text())
    manifest = connection.declarations["manifest_declaration"]
    assert (manifest["author"], manifest["name"], manifest["version"]) == (
        manifest_file["author"],
        manifest_file["name"],
        manifest_file["version"],
    )

    [provider] = connection.declarations["model_declaration"]
    assert provider["provider"] == "xinference"
    assert provider["supported_model_types"] == target.supported_model_types
    assert provider["configurate_methods"] == ["customizable-model"]
    assert "server_url" in {form["variable"] for form in provider["model_credential_schema"]["credential_form_schemas"]}

    assets_folder = target.root / "_assets"
    assert connection.assets == {path.name: path.read_bytes() for path in assets_folder.iterdir() if path.is_file()}
    assert manifest_file["icon"] in connection.assets


def serve_one_invoke(connection, credentials) -> None:
    result = connection.request(
        "invoke_llm",
        "llm",
        "my-chat",
        credentials,
        prompt_messages=[{"role": "user", "content": "Say hello."}],
        model_parameters={},
        tools=None,
        stop=None,
        stream=True,
    )
    assert result.ok, result.error
    assert llm_text(result.chunks) == "".join(ANSWER_PIECES)
    assert result.last["delta"]["usage"]["total_tokens"] > 0


def test_remote_debug_via_environment_registers_and_serves_an_invoke(target, credentials):
    with DebugServer(DEBUG_KEY) as server:
        plugin = remote_plugin(target, env=remote_env(server, DEBUG_KEY))
        try:
            connection = server.accept(CONNECT_TIMEOUT)
            connection.wait_until_registered(CONNECT_TIMEOUT)
            assert_registered_like_dify_expects(connection, target)
            serve_one_invoke(connection, credentials)
        except HarnessError as exc:
            raise HarnessError(f"{exc}\n{plugin.output[-4000:]}") from exc
        finally:
            plugin.stop()
        connection.close()
        assert STUB_API_KEY not in plugin.output  # the debug console shows this output


def test_remote_debug_via_a_dotenv_file_in_the_plugin_root(target, credentials, tmp_path):
    plugin_root = tmp_path / "plugin"
    shutil.copytree(target.root, plugin_root, ignore=NOT_THE_PLUGIN)
    with DebugServer(DEBUG_KEY) as server:
        # What README tells a developer to do: copy .env.example to .env and fill it in.
        (plugin_root / ".env").write_text(
            f"INSTALL_METHOD=remote\nREMOTE_INSTALL_URL={server.address}\nREMOTE_INSTALL_KEY={DEBUG_KEY}\n"
        )
        plugin = remote_plugin(target, plugin_root=plugin_root, install_method=None)
        try:
            connection = server.accept(CONNECT_TIMEOUT)
            connection.wait_until_registered(CONNECT_TIMEOUT)
            assert connection.handshake_accepted
            serve_one_invoke(connection, credentials)
        finally:
            plugin.stop()
        connection.close()


def test_a_wrong_debug_key_ends_the_plugin_with_one_clear_line(target):
    with DebugServer(DEBUG_KEY) as server:
        plugin = remote_plugin(target, env=remote_env(server, "not-the-key"))
        connections = []
        try:
            # Like the daemon, answer every attempt: the SDK itself would reconnect forever.
            deadline = time.monotonic() + CONNECT_TIMEOUT
            while plugin.process.poll() is None:
                if time.monotonic() > deadline:
                    pytest.fail(f"the plugin kept running after its key was refused:\n{plugin.output[-4000:]}")
                try:
                    connections.append(server.accept(0.5))
                except HarnessError:
                    pass
        finally:
            plugin.stop()
    assert connections[0].handshake == {"type": "handshake", "data": {"key": "not-the-key"}}
    assert plugin.process.returncode == 1
    stderr = plugin.stderr.text
    assert "Dify refused REMOTE_INSTALL_KEY (handshake failed, invalid key)" in stderr
    assert "Traceback" not in stderr and len(stderr.splitlines()) <= 5

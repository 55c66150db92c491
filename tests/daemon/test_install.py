"""The package from scripts/package, uploaded and installed as Dify's console does it."""

from tests.daemon.conftest import PROVIDER


def test_the_daemon_computes_the_identifier_scripts_package_printed(installed):
    assert installed["identifier"] == installed["printed_identifier"]


def test_the_install_task_succeeds_and_the_plugin_is_listed(installed, client):
    print(f"\ninstall task: {installed['task']}")
    identifiers = [plugin.get("plugin_unique_identifier") for plugin in client.installed_plugins()]
    assert installed["identifier"] in identifiers


def test_the_daemon_declares_the_provider_with_every_model_type(installed, client):
    providers = [entry for entry in client.model_providers() if entry.get("provider") == PROVIDER]
    assert len(providers) == 1, client.model_providers()
    declaration = providers[0]["declaration"]
    print(f"\nprovider declaration: supported_model_types={declaration['supported_model_types']}")
    assert set(declaration["supported_model_types"]) == {"llm", "text-embedding", "rerank", "speech2text", "tts"}
    timeout_field = next(
        form for form in declaration["model_credential_schema"]["credential_form_schemas"]
        if form["variable"] == "invoke_timeout"
    )  # fmt: skip
    # The help that says the daemon cuts requests at 600 s reaches Dify.
    assert "600" in timeout_field["help"]["en_US"]

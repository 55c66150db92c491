from dify_plugin import ModelProvider


class XinferenceProvider(ModelProvider):
    def validate_provider_credentials(self, credentials: dict) -> None:
        """Nothing to check at provider level: every Xinference model carries its own
        server URL and UID, and each model type validates them (customizable models)."""

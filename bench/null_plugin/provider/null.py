from dify_plugin import ModelProvider


class NullProvider(ModelProvider):
    def validate_provider_credentials(self, credentials: dict) -> None:
        """Nothing to check: the models take any credentials."""

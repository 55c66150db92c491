"""What every Xinference model class shares: settings, the type check, validation, errors.

Model classes inherit `XinferenceModel` first, then the SDK's base class, e.g.
`class XinferenceLargeLanguageModel(XinferenceModel, LargeLanguageModel)`.
`XinferenceModel` is deliberately not an `AIModel`, so the SDK's loader never mistakes
it for a model class.
"""

from collections.abc import Callable, Iterable, Mapping

from dify_plugin.entities import I18nObject
from dify_plugin.entities.model import AIModelEntity, FetchFrom, ModelFeature, ModelType, ParameterRule
from dify_plugin.errors.model import (
    CredentialsValidateFailedError,
    InvokeBadRequestError,
    InvokeConnectionError,
    InvokeError,
)

from models.common.credentials import CredentialsError, ServerSettings, parse_settings
from models.common.errors import INVOKE_ERROR_MAPPING, names_unknown_model
from models.common.metadata import ModelDescription, describe, running_model_uids


class XinferenceModel:
    # What the Xinference describe answer must say for this Dify model type.
    xinference_model_type: str = ""
    accepted_abilities: tuple[str, ...] = ()  # any one of them; empty = no ability check
    dify_type_name: str = ""

    # ---- settings and metadata --------------------------------------------------

    @staticmethod
    def settings_of(credentials: Mapping) -> ServerSettings:
        """The parsed credential form; a bad field raises `InvokeBadRequestError` naming it."""
        try:
            return parse_settings(credentials)
        except CredentialsError as exc:
            raise InvokeBadRequestError(str(exc)) from exc

    def describe_checked(self, settings: ServerSettings, *, fresh: bool = False) -> ModelDescription:
        """The model's description, after checking it is the model type this class serves."""
        description = describe(settings, fresh=fresh)
        wrong_type = self._type_mismatch(settings, description)
        if wrong_type:
            raise InvokeBadRequestError(wrong_type)
        return description

    def _type_mismatch(self, settings: ServerSettings, description: ModelDescription) -> str | None:
        if description.kind != self.xinference_model_type:
            return (
                f"Model '{settings.model_uid}' is {_with_article(description.model_type or 'unknown')} "
                f"model on Xinference, but it was added to Dify as {_with_article(self.dify_type_name)} model."
            )
        if (
            self.accepted_abilities
            and description.model_ability
            and not any(description.has(ability) for ability in self.accepted_abilities)
        ):
            return (
                f"Model '{settings.model_uid}' is {_with_article(description.model_type)} model with abilities "
                f"{description.model_ability}, none of which is {' or '.join(self.accepted_abilities)}, "
                f"so it cannot serve as a {self.dify_type_name} model."
            )
        return None

    # ---- validation -------------------------------------------------------------

    def validate_with_probe(
        self,
        credentials: Mapping,
        probe: Callable[[ServerSettings, ModelDescription], None],
    ) -> None:
        """Describe the model fresh, check its type, then let `probe` make one tiny real call."""
        try:
            settings = parse_settings(credentials)
        except CredentialsError as exc:
            raise CredentialsValidateFailedError(str(exc)) from exc
        try:
            description = self.describe_checked(settings, fresh=True)
            probe(settings, description)
        except InvokeError as exc:
            raise CredentialsValidateFailedError(_explain(settings, exc)) from exc
        except CredentialsValidateFailedError:
            raise
        except Exception as exc:
            raise CredentialsValidateFailedError(
                f"Validating model '{settings.model_uid}' failed: {exc}"
            ) from exc

    # ---- errors -----------------------------------------------------------------

    @property
    def _invoke_error_mapping(self) -> dict[type[InvokeError], list[type[Exception]]]:
        return INVOKE_ERROR_MAPPING

    def _transform_invoke_error(self, error: Exception) -> InvokeError:
        """Keeps errors the HTTP layer already mapped as they are.

        The SDK's own version replaces the message of an authorization error with a
        generic text and prefixes the others; a Dify admin needs Xinference's words.
        """
        if isinstance(error, InvokeError):
            return error
        for invoke_error, source_types in self._invoke_error_mapping.items():
            if isinstance(error, tuple(source_types)):
                return invoke_error(f"{error}")
        return InvokeError(f"Xinference plugin error: {error}")


def customizable_schema(
    model: str,
    model_type: ModelType,
    properties: dict,
    features: Iterable[ModelFeature] = (),
    parameter_rules: Iterable[ParameterRule] = (),
) -> AIModelEntity:
    """The Dify schema of a model an admin added by its UID (a "customizable model")."""
    return AIModelEntity(
        model=model,
        label=I18nObject(en_US=model),
        model_type=model_type,
        fetch_from=FetchFrom.CUSTOMIZABLE_MODEL,
        features=list(features),
        model_properties=properties,
        parameter_rules=list(parameter_rules),
    )


def _with_article(word: str) -> str:
    # "an LLM", "an embedding", "a rerank", "an audio", "a speech-to-text"
    return f"{'an' if word[:1].lower() in 'aeiou' or word.startswith('LLM') else 'a'} {word}"


def _explain(settings: ServerSettings, error: InvokeError) -> str:
    message = str(error)
    if names_unknown_model(error):
        try:
            uids = running_model_uids(settings)
        except InvokeError:
            return message
        offered = ", ".join(uids) if uids else "none"
        return f"{message} Models running on {settings.base_url}: {offered}."
    if isinstance(error, InvokeConnectionError):
        return f"{message}. Check the server URL."
    return message

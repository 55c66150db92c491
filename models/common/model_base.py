"""What every Xinference model class shares: the call preamble, validation, the error edge.

Model classes inherit `XinferenceModel[TheirSettings]` first, then the SDK's base class, e.g.
`class XinferenceTextEmbeddingModel(XinferenceModel[EmbeddingSettings], TextEmbeddingModel)`.
`XinferenceModel` is deliberately not an `AIModel`, so the SDK's loader never mistakes
it for a model class.

Every call starts with `prepare(credentials)`: the form parsed into the type's settings
(the invoke timeout starts counting here) and the model's description, checked to be
the model type the class serves. Whatever leaves a call is one of Dify's five
`InvokeError` classes (validation: `CredentialsValidateFailedError`), without the API key:
`_transform_invoke_error` is that edge (the SDK calls it for what `_invoke` raises;
`dify_errors_of` for what a returned stream raises).
"""

from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from typing import Generic, NamedTuple, TypeVar, cast

from dify_plugin.entities import I18nObject
from dify_plugin.entities.model import AIModelEntity, FetchFrom, ModelFeature, ModelType, ParameterRule
from dify_plugin.errors.model import (
    CredentialsValidateFailedError,
    InvokeBadRequestError,
    InvokeError,
    InvokeServerUnavailableError,
)

from models.common.credentials import CredentialsError, ServerSettings, parse_settings
from models.common.errors import INVOKE_ERROR_MAPPING, Reason, XinferenceError, to_dify, unexpected, with_sentence
from models.common.metadata import describe, running_model_uids
from models.common.redaction import redact, shorten
from models.common.wire import ModelDescription

SettingsT = TypeVar("SettingsT", bound=ServerSettings)
_Item = TypeVar("_Item")

# Dify's own classes, exactly: Dify maps a plugin's error by its class name.
_DIFY_INVOKE_ERRORS = tuple(INVOKE_ERROR_MAPPING)


class Prepared(NamedTuple, Generic[SettingsT]):
    settings: SettingsT
    description: ModelDescription


class XinferenceModel(Generic[SettingsT]):
    # The settings class this model type parses its form into.
    settings_type: type[ServerSettings] = ServerSettings
    # What the Xinference describe answer must say for this Dify model type.
    xinference_model_type: str = ""
    accepted_abilities: tuple[str, ...] = ()  # any one of them; empty = no ability check
    dify_type_name: str = ""

    # ---- the call preamble ------------------------------------------------------------

    def settings_of(self, credentials: Mapping) -> SettingsT:
        """The parsed form; a bad field raises `InvokeBadRequestError` naming it."""
        try:
            return cast(SettingsT, parse_settings(credentials, self.settings_type))
        except CredentialsError as exc:
            raise InvokeBadRequestError(str(exc)) from None

    def prepare(self, credentials: Mapping) -> Prepared[SettingsT]:
        """Settings and the checked description of the model, at the start of every call."""
        settings = self.settings_of(credentials)
        return Prepared(settings, self._checked_description(settings))

    def _checked_description(self, settings: ServerSettings, *, fresh: bool = False) -> ModelDescription:
        description = describe(settings, fresh=fresh)
        uid = shorten(settings.model_uid, 200)
        if description.kind != self.xinference_model_type:
            raise InvokeBadRequestError(
                redact(
                    f"Model '{uid}' is {_with_article(shorten(description.model_type, 100) or 'unknown')} "
                    f"model on Xinference, but it was added to Dify as {_with_article(self.dify_type_name)} model.",
                    settings.api_key,
                )
            )
        if (
            self.accepted_abilities
            and description.model_ability
            and not any(description.has(ability) for ability in self.accepted_abilities)
        ):
            raise InvokeBadRequestError(
                redact(
                    f"Model '{uid}' is {_with_article(description.model_type)} model with abilities "
                    f"{shorten(str(description.model_ability), 300)}, none of which is "
                    f"{' or '.join(self.accepted_abilities)}, so it cannot serve as a {self.dify_type_name} model.",
                    settings.api_key,
                )
            )
        return description

    # ---- validation -------------------------------------------------------------

    def validate_with_probe(
        self,
        credentials: Mapping,
        probe: Callable[[SettingsT, ModelDescription], None],
    ) -> None:
        """Describe the model fresh, check its type, then let `probe` make one tiny real call.

        Raises only `CredentialsValidateFailedError`, whatever the form or the server holds.
        """
        try:
            settings = cast(SettingsT, parse_settings(credentials, self.settings_type))
        except CredentialsError as exc:
            raise CredentialsValidateFailedError(str(exc)) from None
        except Exception as exc:
            raise CredentialsValidateFailedError(str(unexpected(exc, None))) from None
        try:
            description = self._checked_description(settings, fresh=True)
            probe(settings, description)
        except CredentialsValidateFailedError as exc:
            raise CredentialsValidateFailedError(_redacted(str(exc), settings)) from None
        except Exception as exc:
            raise CredentialsValidateFailedError(_explain(settings, exc, self._transform_invoke_error(exc))) from exc

    # ---- the error edge ------------------------------------------------------------

    @property
    def _invoke_error_mapping(self) -> dict[type[InvokeError], list[type[Exception]]]:
        return INVOKE_ERROR_MAPPING

    def _transform_invoke_error(self, error: Exception) -> InvokeError:
        """Any exception as one of Dify's five classes, keeping the server's words.

        The SDK's own version replaces the message of an authorization error with a
        generic text and prefixes the others; a Dify admin needs Xinference's words.
        """
        if isinstance(error, XinferenceError):
            return to_dify(error)
        if type(error) in _DIFY_INVOKE_ERRORS:
            return cast(InvokeError, error)
        if isinstance(error, InvokeError):  # the base class or someone's subclass: Dify's name for it
            dify_class = next((kind for kind in _DIFY_INVOKE_ERRORS if isinstance(error, kind)), None)
            return (dify_class or InvokeServerUnavailableError)(shorten(str(error.description or error)))
        for invoke_error, source_types in self._invoke_error_mapping.items():
            if isinstance(error, tuple(source_types)):
                return invoke_error(shorten(str(error)))
        return unexpected(error, None)

    def dify_errors_of(self, items: Iterator[_Item]) -> Generator[_Item, None, None]:
        """`items`, whatever they raise turned into Dify's classes: for a stream `_invoke` returns
        (the SDK maps what `_invoke` raises, not what the generator it returns raises)."""
        try:
            yield from items
        except Exception as exc:
            error = self._transform_invoke_error(exc)
            if error is exc:
                raise
            raise error from exc

    def get_customizable_model_schema_from_credentials(
        self, model: str, credentials: Mapping
    ) -> AIModelEntity | None:
        # The SDK asks for the schema before `_invoke`, outside its error mapping.
        try:
            schema = super().get_customizable_model_schema_from_credentials(model, credentials)  # type: ignore[misc]
        except Exception as exc:
            raise self._transform_invoke_error(exc) from None
        return cast(AIModelEntity | None, schema)


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


def _explain(settings: ServerSettings, exc: Exception, error: InvokeError) -> str:
    message = _redacted(str(error), settings)
    reason = exc.reason if isinstance(exc, XinferenceError) else None
    if reason is Reason.UNKNOWN_MODEL:
        try:
            uids = running_model_uids(settings)
        except Exception:
            return message
        offered = ", ".join(uids) if uids else "none"
        return _redacted(with_sentence(message, f"Models running on {settings.shown_url}: {shorten(offered, 1000)}."), settings)
    if reason is Reason.UNREACHABLE:
        return with_sentence(message, "Check the server URL.")
    return message


def _redacted(text: str, settings: ServerSettings) -> str:
    return shorten(redact(text, settings.api_key), 3000)

"""Text-to-speech models served by Xinference (`POST /v1/audio/speech`)."""

from collections.abc import Iterator

from dify_plugin import TTSModel
from dify_plugin.entities.model import AIModelEntity, ModelPropertyKey, ModelType
from dify_plugin.errors.model import InvokeBadRequestError, InvokeServerUnavailableError

from models.common.concurrency import ordered_map
from models.common.credentials import ServerSettings, SpeechSettings
from models.common.http import XinferenceClient
from models.common.model_base import XinferenceModel, customizable_schema
from models.common.wire import ModelDescription
from models.tts.voices import ALL_LANGUAGES, Voice, voices_for

AUDIO_TYPE = "mp3"
# Characters per request. Longer texts are split at sentence or clause ends: engines
# such as ChatTTS stop after a fixed number of audio tokens, cutting long inputs short.
WORD_LIMIT = 200
# Pieces of one text synthesised at once, on the plugin's one shared executor.
MAX_WORKERS = 3
_SPLIT_AFTER = r"[。！？；，、!?;,\n]|\.(?=\s|$)"
_PROBE_TEXT = "Hello."


class XinferenceText2SpeechModel(XinferenceModel[SpeechSettings], TTSModel):
    settings_type = SpeechSettings
    xinference_model_type = "audio"
    accepted_abilities = ("text2audio", "text2audio_zero_shot", "text2audio_voice_cloning", "text-to-audio")
    dify_type_name = "text-to-speech"

    def _invoke(
        self,
        model: str,
        tenant_id: str,
        credentials: dict,
        content_text: str,
        voice: str,
        user: str | None = None,
    ) -> Iterator[bytes]:
        settings, description = self.prepare(credentials)
        voice = (voice or "").strip() or _voices(settings, description)[0].id
        pieces = _pieces_of(content_text)
        if not pieces:
            raise InvokeBadRequestError("There is no text to speak: the text is empty or only punctuation.")
        # The audio of each piece is yielded in order as soon as it and those before it are ready.
        return ordered_map(lambda piece: _speech(settings, piece, voice), pieces, MAX_WORKERS)

    def validate_credentials(self, model: str, credentials: dict) -> None:
        self.validate_with_probe(credentials, _speak_a_probe_text)

    def get_customizable_model_schema(self, model: str, credentials: dict) -> AIModelEntity:
        settings, description = self.prepare(credentials)
        voices = _voices(settings, description)
        return customizable_schema(
            model,
            ModelType.TTS,
            {
                ModelPropertyKey.DEFAULT_VOICE: voices[0].id,
                ModelPropertyKey.VOICES: [voice.for_dify() for voice in voices],
                ModelPropertyKey.WORD_LIMIT: WORD_LIMIT,
                ModelPropertyKey.AUDIO_TYPE: AUDIO_TYPE,
                ModelPropertyKey.MAX_WORKERS: MAX_WORKERS,
            },
        )

    # `_invoke_error_mapping` and `_transform_invoke_error` come from XinferenceModel:
    # one table for every model type (models/common/errors.py).


def _voices(settings: SpeechSettings, description: ModelDescription) -> tuple[Voice, ...]:
    """The model family's known voices, default first; the `tts_voice` credential leads when set."""
    known = voices_for(description.model_family, description.model_name)
    chosen = settings.voice
    if not chosen:
        return known
    return (Voice(chosen, f"{chosen} (set for this model)", ALL_LANGUAGES),) + tuple(
        voice for voice in known if voice.id != chosen
    )


def _pieces_of(text: str) -> list[str]:
    pieces = TTSModel._split_text_into_sentences(text or "", max_length=WORD_LIMIT, pattern=_SPLIT_AFTER)
    return [piece.strip() for piece in pieces if any(character.isalnum() for character in piece)]


def _speak_a_probe_text(settings: SpeechSettings, description: ModelDescription) -> None:
    _speech(settings, _PROBE_TEXT, _voices(settings, description)[0].id)


def _speech(settings: ServerSettings, text: str, voice: str) -> bytes:
    # Blocking, not `stream: true`: the description does not say whether the engine can
    # stream (Kokoro, MeloTTS, F5-TTS, Qwen3-TTS refuse it), and a streamed failure would
    # only show after the 200. Pieces of a long text bring the first audio early instead.
    body = {"model": settings.model_uid, "input": text, "voice": voice, "response_format": AUDIO_TYPE, "speed": 1.0}
    # Each piece of a long text gets the whole invoke timeout: the audio is a stream.
    audio = XinferenceClient(settings.restarted()).post_for_bytes("/v1/audio/speech", body)
    if not audio:
        raise InvokeServerUnavailableError(f"Xinference answered without any audio for {text[:50]!r}")
    return audio

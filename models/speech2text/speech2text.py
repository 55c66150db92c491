"""Speech-to-text models served by Xinference (`POST /v1/audio/transcriptions`)."""

import io
import math
import os
import struct
import wave
from typing import IO

from dify_plugin import Speech2TextModel
from dify_plugin.entities.model import AIModelEntity, ModelPropertyKey, ModelType
from dify_plugin.errors.model import InvokeBadRequestError

from models.common.credentials import TranscriptionSettings
from models.common.http import XinferenceClient
from models.common.model_base import XinferenceModel, customizable_schema
from models.common.wire import ModelDescription, TranscriptionAnswer, parse_wire

# The answer format every engine and version gives; the current Whisper engine answers
# `text` and `verbose_json` with a 500.
RESPONSE_FORMAT = "json"
SUPPORTED_FILE_EXTENSIONS = "flac,mp3,mp4,mpeg,mpga,m4a,ogg,wav,webm"
FILE_UPLOAD_LIMIT_MB = 30  # Dify's own limit for audio it transcribes


class XinferenceSpeech2TextModel(XinferenceModel[TranscriptionSettings], Speech2TextModel):
    settings_type = TranscriptionSettings
    xinference_model_type = "audio"
    accepted_abilities = ("audio2text", "audio-to-text")
    dify_type_name = "speech-to-text"

    def _invoke(self, model: str, credentials: dict, file: IO[bytes], user: str | None = None) -> str:
        settings = self.prepare(credentials).settings
        # Bytes, not the file object: the HTTP layer may resend the request on a stale connection.
        audio = file.read()
        if not audio:
            raise InvokeBadRequestError("The audio file is empty.")
        return _transcribe(settings, _upload_name(file), audio)

    def validate_credentials(self, model: str, credentials: dict) -> None:
        self.validate_with_probe(credentials, _transcribe_a_probe_clip)

    def get_customizable_model_schema(self, model: str, credentials: dict) -> AIModelEntity:
        return customizable_schema(
            model,
            ModelType.SPEECH2TEXT,
            {
                ModelPropertyKey.FILE_UPLOAD_LIMIT: FILE_UPLOAD_LIMIT_MB,
                ModelPropertyKey.SUPPORTED_FILE_EXTENSIONS: SUPPORTED_FILE_EXTENSIONS,
            },
        )

    # `_invoke_error_mapping` and `_transform_invoke_error` come from XinferenceModel:
    # one table for every model type (models/common/errors.py).


def _transcribe(settings: TranscriptionSettings, file_name: str, audio: bytes) -> str:
    fields = {"model": settings.model_uid, "response_format": RESPONSE_FORMAT}
    if settings.language:
        fields["language"] = settings.language
    if settings.prompt:
        fields["prompt"] = settings.prompt
    answer = XinferenceClient(settings).post_form(
        "/v1/audio/transcriptions", fields, files={"file": (file_name, audio)}
    )
    return parse_wire(TranscriptionAnswer, answer).text.strip()


def _transcribe_a_probe_clip(settings: TranscriptionSettings, description: ModelDescription) -> None:
    _transcribe(settings, "probe.wav", _probe_clip())


def _upload_name(file: IO[bytes]) -> str:
    name = getattr(file, "name", None)
    return os.path.basename(name) if isinstance(name, str) and name else "audio"


def _probe_clip() -> bytes:
    """One second of a 440 Hz tone, 16 kHz mono 16-bit WAV: tiny, and every engine decodes it."""
    rate = 16000
    samples = [round(8000 * math.sin(2 * math.pi * 440 * n / rate)) for n in range(rate)]
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as clip:
        clip.setnchannels(1)
        clip.setsampwidth(2)
        clip.setframerate(rate)
        clip.writeframes(struct.pack(f"<{rate}h", *samples))
    return buffer.getvalue()

"""Speech-to-text as Dify drives it: `invoke` with a file object, `validate_credentials`, the schema.

Wire shapes: xinference/api/restful_api.py `create_transcriptions` (multipart form: `model`,
`file`, `language`, `prompt`, `response_format` defaulting to "json"; answer `{"text": ...}`),
xinference/model/audio/core.py `to_description` for the describe answer (`model_ability`
only from 1.6 on), /work/shared/xinference-api.md for the error bodies.
"""

import io
import tempfile
import wave

import pytest
import responses
from dify_plugin.entities.model import ModelPropertyKey
from dify_plugin.errors.model import (
    CredentialsValidateFailedError,
    InvokeBadRequestError,
)

from models.speech2text.speech2text import XinferenceSpeech2TextModel
from tests.unit.xinference import SERVER, UID, credentials

DESCRIBE = f"{SERVER}/v1/models/{UID}"
TRANSCRIPTIONS = f"{SERVER}/v1/audio/transcriptions"
AUDIO = b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x80>\x00\x00\x00}\x00\x00\x02\x00\x10\x00data\x00\x00\x00\x00"


def describe_audio(abilities=("audio2text",), family="whisper", name="whisper-tiny") -> dict:
    description = {
        "model_type": "audio",
        "address": "127.0.0.1:41227",
        "accelerators": [],
        "model_name": name,
        "model_family": family,
        "model_revision": None,
        "model_engine": "transformers",
    }
    if abilities is not None:
        description["model_ability"] = list(abilities)
    return description


def stt() -> XinferenceSpeech2TextModel:
    return XinferenceSpeech2TextModel(model_schemas=[])


def transcribe(creds=None, audio=AUDIO, name="recording.wav") -> str:
    file = io.BytesIO(audio)
    file.name = name
    return stt().invoke("my-whisper", creds or credentials(), file)


def sent_form(call_index: int = -1) -> dict:
    """The multipart fields of a request: text fields as str, files as (filename, bytes)."""
    request = responses.calls[call_index].request
    boundary = request.headers["Content-Type"].split("boundary=")[1].encode()
    form = {}
    for part in request.body.split(b"--" + boundary)[1:-1]:
        head, _, content = part.strip(b"\r\n").partition(b"\r\n\r\n")
        disposition = head.decode().split("\r\n")[0]
        params = dict(
            item.strip().split("=", 1) for item in disposition.split(";")[1:] if "=" in item
        )
        name = params["name"].strip('"')
        if "filename" in params:
            form[name] = (params["filename"].strip('"'), content)
        else:
            form[name] = content.decode()
    return form


def serve(text=" Hello from the tiny whisper model.", abilities=("audio2text",)) -> None:
    responses.get(DESCRIBE, json=describe_audio(abilities))
    responses.post(TRANSCRIPTIONS, json={"text": text})


# ---- invoke ---------------------------------------------------------------------------------


@responses.activate
def test_transcription_uploads_the_file_with_json_format_and_returns_the_text():
    serve()
    assert transcribe() == "Hello from the tiny whisper model."
    form = sent_form()
    assert form == {
        "model": UID,
        "response_format": "json",
        "file": ("recording.wav", AUDIO),
    }


@responses.activate
def test_language_and_prompt_are_sent_only_when_set():
    serve()
    transcribe(credentials(audio_language="en", audio_prompt="Xinference, Dify"))
    form = sent_form()
    assert form["language"] == "en"
    assert form["prompt"] == "Xinference, Dify"
    assert form["response_format"] == "json"

    transcribe(credentials(audio_language="  ", audio_prompt=""))
    assert "language" not in sent_form() and "prompt" not in sent_form()


@responses.activate
def test_the_temporary_file_dify_hands_over_keeps_its_suffix():
    # Dify's executor passes `NamedTemporaryFile(suffix=...).file`.
    serve()
    with tempfile.NamedTemporaryFile(suffix=".mp3", mode="w+b") as temp:
        temp.write(b"ID3\x03\x00fake mp3")
        temp.flush()
        temp.seek(0)
        stt().invoke("my-whisper", credentials(), temp.file)
    file_name, content = sent_form()["file"]
    assert file_name.endswith(".mp3") and "/" not in file_name
    assert content == b"ID3\x03\x00fake mp3"


@responses.activate
def test_an_empty_file_is_refused_before_anything_is_uploaded():
    responses.get(DESCRIBE, json=describe_audio())
    with pytest.raises(InvokeBadRequestError, match="audio file is empty"):
        transcribe(audio=b"")
    assert [c.request.method for c in responses.calls] == ["GET"]


# ---- errors ---------------------------------------------------------------------------------


@responses.activate
def test_a_text_to_speech_model_is_refused_naming_its_abilities():
    responses.get(DESCRIBE, json=describe_audio(["text2audio"], family="CosyVoice", name="CosyVoice-300M-SFT"))
    with pytest.raises(InvokeBadRequestError, match=r"abilities \['text2audio'\].*speech-to-text"):
        transcribe()


@responses.activate
def test_before_1_6_the_servers_own_words_name_the_wrong_type():
    # Describe answers carry no `model_ability` before 1.6; the model actor then says it.
    responses.get(DESCRIBE, json=describe_audio(abilities=None, family="ChatTTS", name="ChatTTS"))
    responses.post(
        TRANSCRIPTIONS,
        status=500,
        json={"detail": "[address=127.0.0.1:41227, pid=7] Model ChatTTS is not for creating transcriptions."},
    )
    with pytest.raises(InvokeBadRequestError, match="wrong model type.*not for creating transcriptions"):
        transcribe()


@responses.activate
def test_older_audio_to_text_ability_is_accepted():
    serve(abilities=["audio-to-text"])
    assert transcribe() == "Hello from the tiny whisper model."


# ---- validation -----------------------------------------------------------------------------


@responses.activate
def test_validation_transcribes_a_generated_one_second_wav_for_real():
    serve()
    stt().validate_credentials("my-whisper", credentials(audio_language="en"))
    assert [c.request.method for c in responses.calls] == ["GET", "POST"]
    form = sent_form()
    assert form["response_format"] == "json" and form["language"] == "en"
    file_name, clip = form["file"]
    assert file_name.endswith(".wav")
    with wave.open(io.BytesIO(clip)) as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getnframes()) == (1, 16000, 16000)
        assert max(wav.readframes(16000)) > 0  # a tone, not silence


@responses.activate
def test_validation_of_an_answer_without_text_is_a_clear_error():
    responses.get(DESCRIBE, json=describe_audio())
    responses.post(TRANSCRIPTIONS, json={"task": "transcribe"})
    with pytest.raises(CredentialsValidateFailedError, match="unexpected shape"):
        stt().validate_credentials("my-whisper", credentials())


@responses.activate
def test_validation_of_a_tts_model_names_both_types():
    responses.get(DESCRIBE, json=describe_audio(["text2audio", "text2audio_zero_shot"], family="ChatTTS"))
    with pytest.raises(CredentialsValidateFailedError, match="audio2text.*speech-to-text"):
        stt().validate_credentials("my-whisper", credentials())


# ---- schema ---------------------------------------------------------------------------------


@responses.activate
def test_schema_declares_file_types_and_limit_without_asking_the_server():
    schema = stt().get_model_schema("my-whisper", credentials())
    assert schema.model_properties[ModelPropertyKey.SUPPORTED_FILE_EXTENSIONS].split(",") == [
        "flac", "mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "wav", "webm",
    ]  # fmt: skip
    assert schema.model_properties[ModelPropertyKey.FILE_UPLOAD_LIMIT] > 0
    assert len(responses.calls) == 0

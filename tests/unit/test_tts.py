"""Text-to-speech as Dify drives it: `invoke`, `get_tts_model_voices`, `validate_credentials`, the schema.

No TTS engine runs on the test machine, so the wire shapes come from Xinference's source:
- request: xinference/api/schemas/requests.py `SpeechRequest` (`model`, `input`, `voice`,
  `response_format`="mp3", `speed`=1.0, `stream`=False, `kwargs`); answer: raw audio bytes
  (xinference/api/restful_api.py `create_speech`, `Response(media_type=..., content=out)`);
- unknown voice: xinference/model/audio/cosyvoice.py asserts
  "Invalid voice {voice}, CosyVoice available speakers: {available_speakers}", melotts.py raises
  "Invalid voice: {voice}, available speakers: {speaker_ids}"; the REST layer answers
  `HTTPException(500, detail=str(e))`, and the model actor prefixes "[address=..., pid=...]";
- a body that does not parse: `SpeechRequest.parse_obj` runs outside the try block, so the
  server answers a plain-text 500 "... validation error for SpeechRequest ...";
- wrong model: xinference/core/model.py "Model {spec} is not for creating speech.";
- describe: xinference/model/audio/core.py `to_description`; families and abilities from
  xinference/model/audio/model_spec.json (abilities in the describe answer from 1.6 on).
"""

import json
import threading

import pytest
import responses
from dify_plugin.entities.model import ModelPropertyKey
from dify_plugin.errors.model import (
    CredentialsValidateFailedError,
    InvokeBadRequestError,
    InvokeServerUnavailableError,
)

from models.tts.tts import MAX_WORKERS, WORD_LIMIT, XinferenceText2SpeechModel
from tests.unit.xinference import SERVER, UID, credentials

DESCRIBE = f"{SERVER}/v1/models/{UID}"
SPEECH = f"{SERVER}/v1/audio/speech"
MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00\xff\xfb\x90\x64" + b"\x00" * 32
COSYVOICE_SPEAKERS = ["中文女", "中文男", "日语男", "粤语女", "英文女", "英文男", "韩语女"]


def describe_audio(family="CosyVoice", name="CosyVoice-300M-SFT", abilities=("text2audio",)):
    description = {
        "model_type": "audio",
        "address": "127.0.0.1:41227",
        "accelerators": ["0"],
        "model_name": name,
        "model_family": family,
        "model_revision": None,
        "model_engine": None,
    }
    if abilities is not None:
        description["model_ability"] = list(abilities)
    return description


def tts() -> XinferenceText2SpeechModel:
    return XinferenceText2SpeechModel(model_schemas=[])


def speak(text="Hello world.", voice="", creds=None) -> bytes:
    audio = tts().invoke("my-tts", "tenant-1", creds or credentials(), text, voice)
    return audio if isinstance(audio, bytes) else b"".join(audio)


def sent_bodies() -> list[dict]:
    return [json.loads(c.request.body) for c in responses.calls if c.request.url == SPEECH]


def serve(audio=MP3, **describe) -> None:
    responses.get(DESCRIBE, json=describe_audio(**describe))
    responses.post(SPEECH, body=audio, content_type="audio/mpeg")


def schema_properties(creds=None) -> dict:
    return tts().get_model_schema("my-tts", creds or credentials()).model_properties


# ---- voices ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "name", "default", "also_offered"),
    [
        ("CosyVoice", "CosyVoice-300M-SFT", "中文女", ["英文男", "粤语女", "韩语女"]),
        ("CosyVoice", "CosyVoice2-0.5B", "中文女", ["英文女"]),
        ("ChatTTS", "ChatTTS", "echo", ["alloy", "nova"]),
        ("Kokoro", "Kokoro-82M", "af_alloy", ["af_heart", "bm_george", "zf_xiaoyi", "jf_alpha"]),
        ("Kokoro-MLX", "Kokoro-82M", "af_alloy", ["am_fenrir"]),
        ("Kokoro-zh", "Kokoro-82M-v1.1-zh", "zf_001", ["zm_010", "af_maple"]),
        ("MeloTTS", "MeloTTS-English", "EN-US", ["EN-BR", "EN_INDIA", "EN-AU", "EN-Default"]),
        ("MeloTTS", "MeloTTS-English-v3", "EN-Newest", []),
        ("MeloTTS", "MeloTTS-Chinese", "ZH", []),
        ("MeloTTS", "MeloTTS-Japanese", "JP", []),
        ("qwen3_tts", "Qwen3-TTS-12Hz-1.7B-CustomVoice", "vivian", ["ryan", "ono_anna"]),
        ("VoxCPM", "VoxCPM2", "alloy", []),
        ("FishAudio", "FishSpeech-1.5", "default", []),
        ("F5-TTS", "F5-TTS", "default", []),
        ("my-own-family", "my-registered-tts", "default", []),
    ],
)
@responses.activate
def test_each_family_offers_its_known_voices_with_a_default_it_accepts(family, name, default, also_offered):
    responses.get(DESCRIBE, json=describe_audio(family=family, name=name))
    properties = schema_properties()
    offered = [voice["mode"] for voice in properties[ModelPropertyKey.VOICES]]
    assert properties[ModelPropertyKey.DEFAULT_VOICE] == default
    assert offered[0] == default
    assert set(also_offered) <= set(offered)
    assert all(voice and voice.strip() == voice for voice in offered)
    assert all(voice["name"] and voice["language"] for voice in properties[ModelPropertyKey.VOICES])


@responses.activate
def test_schema_declares_mp3_word_limit_and_workers():
    responses.get(DESCRIBE, json=describe_audio())
    properties = schema_properties()
    assert properties[ModelPropertyKey.AUDIO_TYPE] == "mp3"
    assert properties[ModelPropertyKey.WORD_LIMIT] == WORD_LIMIT
    assert properties[ModelPropertyKey.MAX_WORKERS] == MAX_WORKERS
    assert tts().get_tts_model_mime_type("my-tts", credentials()) == "audio/mpeg"


@responses.activate
def test_voices_as_dify_lists_them_filtered_by_the_apps_language():
    responses.get(DESCRIBE, json=describe_audio())
    everything = tts().get_tts_model_voices("my-tts", credentials())
    assert [voice["value"] for voice in everything] == ["中文女", "中文男", "英文女", "英文男", "日语男", "粤语女", "韩语女"]
    assert everything[0] == {"name": "中文女 (Chinese, female)", "value": "中文女"}
    english = tts().get_tts_model_voices("my-tts", credentials(), language="en-US")
    assert [voice["value"] for voice in english] == ["英文女", "英文男"]


@responses.activate
def test_the_tts_voice_credential_becomes_the_default_for_every_language():
    responses.get(DESCRIBE, json=describe_audio())
    creds = credentials(tts_voice=" my_speaker ")
    assert schema_properties(creds)[ModelPropertyKey.DEFAULT_VOICE] == "my_speaker"
    for language in ("en-US", "ja-JP", "zh-Hans"):
        assert tts().get_tts_model_voices("my-tts", creds, language=language)[0]["value"] == "my_speaker"
    # A known voice named in the credential is listed once, first.
    offered = [v["value"] for v in tts().get_tts_model_voices("my-tts", credentials(tts_voice="英文男"))]
    assert offered[0] == "英文男" and offered.count("英文男") == 1


# ---- invoke ---------------------------------------------------------------------------------


@responses.activate
def test_speech_request_in_xinferences_shape_and_the_audio_comes_back():
    serve()
    assert speak("Hello world.", voice="英文女") == MP3
    assert sent_bodies() == [
        {"model": UID, "input": "Hello world.", "voice": "英文女", "response_format": "mp3", "speed": 1.0}
    ]


@responses.activate
def test_without_a_voice_from_dify_the_family_default_is_sent_never_an_empty_one():
    serve(family="Kokoro", name="Kokoro-82M")
    speak(voice="")
    speak(voice="   ")
    assert [body["voice"] for body in sent_bodies()] == ["af_alloy", "af_alloy"]


@responses.activate
def test_the_tts_voice_credential_replaces_the_default_but_not_a_voice_dify_chose():
    serve()
    speak(voice="", creds=credentials(tts_voice="my_speaker"))
    speak(voice="韩语女", creds=credentials(tts_voice="my_speaker"))
    assert [body["voice"] for body in sent_bodies()] == ["my_speaker", "韩语女"]


@responses.activate
def test_a_long_text_is_split_at_sentence_ends_within_the_word_limit_and_kept_in_order():
    sentences = [f"Sentence number {n} carries enough words to fill a good part of a piece." for n in range(12)]
    text = " ".join(sentences)
    in_flight, most_in_flight, threads = 0, 0, set()
    lock = threading.Lock()
    a_later_piece_is_done = threading.Event()
    first_piece_outlived_a_later_one = []

    def answer(request):
        nonlocal in_flight, most_in_flight
        piece = json.loads(request.body)["input"]
        with lock:
            in_flight += 1
            most_in_flight = max(most_in_flight, in_flight)
            threads.add(threading.current_thread().name)
        if piece.startswith("Sentence number 0 "):
            # The first piece is answered last of its wave: later pieces are ready before it.
            first_piece_outlived_a_later_one.append(a_later_piece_is_done.wait(10))
        with lock:
            in_flight -= 1
        a_later_piece_is_done.set()
        return 200, {"Content-Type": "audio/mpeg"}, f"<{piece}>".encode()

    responses.get(DESCRIBE, json=describe_audio())
    responses.add_callback(responses.POST, SPEECH, callback=answer)
    audio = speak(text)

    pieces = [body["input"] for body in sent_bodies()]
    assert len(pieces) > 3
    assert all(len(piece) <= WORD_LIMIT and piece.endswith(".") for piece in pieces)
    assert " ".join(sorted(pieces, key=text.index)) == text
    assert first_piece_outlived_a_later_one == [True]
    assert audio == "".join(f"<{piece}>" for piece in sorted(pieces, key=text.index)).encode()
    assert 1 < most_in_flight <= MAX_WORKERS
    assert all(name.startswith("xinference") for name in threads)  # the one shared executor


@responses.activate
def test_chinese_text_is_split_after_its_own_punctuation():
    serve()
    text = "今天天气很好。" * 40
    speak(text)
    pieces = [body["input"] for body in sent_bodies()]
    assert len(pieces) > 1
    assert all(piece.endswith("。") and len(piece) <= WORD_LIMIT for piece in pieces)
    assert "".join(pieces) == text


@responses.activate
def test_punctuation_only_pieces_are_not_sent_and_a_text_without_words_is_refused():
    serve()
    text = "Hello " * 30 + "!" * 100  # splits into "Hello … !!!" and a piece of "!" only
    speak(text)
    assert [body["input"] for body in sent_bodies()] == [text[:WORD_LIMIT].strip()]
    with pytest.raises(InvokeBadRequestError, match="no text to speak"):
        speak(" ...!? ")


# ---- errors ---------------------------------------------------------------------------------


@responses.activate
def test_an_unknown_voice_reports_the_voices_the_server_knows():
    responses.get(DESCRIBE, json=describe_audio())
    responses.post(
        SPEECH,
        status=500,
        json={
            "detail": "[address=127.0.0.1:41227, pid=7] Invalid voice nobody, "
            f"CosyVoice available speakers: {COSYVOICE_SPEAKERS}"
        },
    )
    with pytest.raises(InvokeBadRequestError, match="does not know this voice") as raised:
        speak(voice="nobody")
    assert str(COSYVOICE_SPEAKERS) in str(raised.value)


@responses.activate
def test_an_unknown_melotts_voice_reports_its_speakers():
    responses.get(DESCRIBE, json=describe_audio(family="MeloTTS", name="MeloTTS-English"))
    responses.post(
        SPEECH,
        status=500,
        json={"detail": "Invalid voice: EN-XX, available speakers: {'EN-US': 0, 'EN-BR': 1, 'EN_INDIA': 2}"},
    )
    with pytest.raises(InvokeBadRequestError, match="available speakers: .*'EN-US': 0, 'EN-BR': 1"):
        speak(voice="EN-XX")


@responses.activate
def test_a_failure_in_a_later_piece_is_raised_after_the_audio_before_it():
    responses.get(DESCRIBE, json=describe_audio())

    def answer(request):
        piece = json.loads(request.body)["input"]
        if piece.startswith("Second"):
            return 500, {"Content-Type": "application/json"}, json.dumps({"detail": "CUDA out of memory"})
        return 200, {"Content-Type": "audio/mpeg"}, b"first-audio"

    responses.add_callback(responses.POST, SPEECH, callback=answer)
    text = "First " + "a" * (WORD_LIMIT - 10) + ". Second " + "b" * 50 + "."
    received = []
    with pytest.raises(InvokeServerUnavailableError, match="CUDA out of memory"):
        for audio in tts().invoke("my-tts", "tenant-1", credentials(), text, ""):
            received.append(audio)
    assert received == [b"first-audio"]


@responses.activate
def test_a_speech_to_text_model_used_as_tts_is_refused_naming_its_abilities():
    responses.get(DESCRIBE, json=describe_audio(family="whisper", name="whisper-tiny", abilities=["audio2text"]))
    with pytest.raises(InvokeBadRequestError, match=r"abilities \['audio2text'\].*text2audio.*text-to-speech"):
        speak()


@responses.activate
def test_a_music_model_is_not_a_speech_model():
    music = describe_audio(family="minimax_music3", name="MiniMax-Music3", abilities=["text2music"])
    responses.get(DESCRIBE, json=music)
    with pytest.raises(InvokeBadRequestError, match="text-to-speech"):
        speak()


@responses.activate
def test_before_1_6_the_servers_own_words_name_the_wrong_type():
    responses.get(DESCRIBE, json=describe_audio(family="whisper", name="whisper-tiny", abilities=None))
    responses.post(
        SPEECH,
        status=500,
        json={"detail": "[address=127.0.0.1:41227, pid=7] Model whisper-tiny is not for creating speech."},
    )
    with pytest.raises(InvokeBadRequestError, match="wrong model type.*not for creating speech"):
        speak()


@pytest.mark.parametrize("abilities", [["text-to-audio"], ["text2audio_zero_shot"], ["text2audio_voice_cloning"]])
@responses.activate
def test_every_text_to_audio_ability_is_accepted(abilities):
    serve(abilities=abilities)
    assert speak() == MP3


# ---- validation -----------------------------------------------------------------------------


@responses.activate
def test_validation_synthesises_a_short_text_with_the_default_voice_for_real():
    serve(family="ChatTTS", name="ChatTTS")
    tts().validate_credentials("my-tts", credentials())
    assert [c.request.method for c in responses.calls] == ["GET", "POST"]
    (body,) = sent_bodies()
    assert body["voice"] == "echo" and body["input"] and body["response_format"] == "mp3"


@responses.activate
def test_validation_uses_the_tts_voice_credential():
    serve()
    tts().validate_credentials("my-tts", credentials(tts_voice="英文男"))
    assert sent_bodies()[0]["voice"] == "英文男"


@responses.activate
def test_validation_fails_when_no_audio_comes_back():
    serve(audio=b"")
    with pytest.raises(CredentialsValidateFailedError, match="without any audio"):
        tts().validate_credentials("my-tts", credentials())


@responses.activate
def test_validation_of_a_bad_tts_voice_shows_the_valid_ones():
    responses.get(DESCRIBE, json=describe_audio())
    responses.post(
        SPEECH,
        status=500,
        json={"detail": f"Invalid voice Alice, CosyVoice available speakers: {COSYVOICE_SPEAKERS}"},
    )
    with pytest.raises(CredentialsValidateFailedError, match="Invalid voice Alice.*英文女"):
        tts().validate_credentials("my-tts", credentials(tts_voice="Alice"))


@responses.activate
def test_validation_of_a_speech_to_text_model_names_both_types():
    responses.get(DESCRIBE, json=describe_audio(family="whisper", name="whisper-tiny", abilities=["audio2text"]))
    with pytest.raises(CredentialsValidateFailedError, match="audio2text.*text-to-speech"):
        tts().validate_credentials("my-tts", credentials())
    assert len(sent_bodies()) == 0


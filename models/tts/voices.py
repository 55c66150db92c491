"""The voices each Xinference text-to-speech family accepts.

Xinference has no endpoint that lists voices, so this table is read from its source
(`xinference/model/audio/*.py`, the model spec `model_spec.json`, and the audio docs
`doc/source/models/model_abilities/audio.rst`). The first voice of each entry is the
default: one the family accepts as it is, so a request never goes out with an empty voice.

Languages are Dify's codes (Dify filters the voice picker by the app's language).
"""

from dataclasses import dataclass

EN, ZH, ZH_HANT, JA, KO = "en-US", "zh-Hans", "zh-Hant", "ja-JP", "ko-KR"
ES, FR, IT, PT, HI, DE, RU = "es-ES", "fr-FR", "it-IT", "pt-BR", "hi-IN", "de-DE", "ru-RU"
ALL_LANGUAGES = (EN, ZH, ZH_HANT, JA, KO, ES, FR, IT, PT, HI, DE, RU)


@dataclass(frozen=True)
class Voice:
    id: str  # what goes into the request's `voice`
    label: str
    languages: tuple[str, ...]

    def for_dify(self) -> dict:
        """The shape `TTSModel.get_tts_model_voices` reads from the model schema."""
        return {"mode": self.id, "name": self.label, "language": list(self.languages)}


def voices_for(family: str | None, model_name: str | None) -> tuple[Voice, ...]:
    """The known voices of a model, default first; a model-specific list wins over its family's."""
    return (
        _BY_MODEL_NAME.get((model_name or "").lower())
        or _BY_FAMILY.get((family or "").lower())
        or _ITS_OWN_VOICE
    )


_KOKORO_ACCENTS = {
    "a": ("American English", EN),
    "b": ("British English", EN),
    "e": ("Spanish", ES),
    "f": ("French", FR),
    "h": ("Hindi", HI),
    "i": ("Italian", IT),
    "j": ("Japanese", JA),
    "p": ("Brazilian Portuguese", PT),
    "z": ("Mandarin", ZH),
}


def _kokoro(*ids: str) -> tuple[Voice, ...]:
    """Kokoro voice names encode accent and gender: "af_heart" is American English, female."""
    voices = []
    for voice_id in ids:
        accent, language = _KOKORO_ACCENTS[voice_id[0]]
        gender = "female" if voice_id[1] == "f" else "male"
        voices.append(Voice(voice_id, f"{voice_id} ({accent}, {gender})", (language,)))
    return tuple(voices)


# Families that ignore `voice` (F5-TTS, FishSpeech, FireRedTTS3, ...), models registered
# by users, and families this table does not know yet: any non-empty name will do.
_ITS_OWN_VOICE = (Voice("default", "default (the model's own voice)", ALL_LANGUAGES),)

# ChatTTS turns any voice name into a fixed random speaker (xinference/model/audio/chattts.py,
# `_voice_seed`); these names are stable choices, not built-in speakers.
_CHATTTS = tuple(
    Voice(name, f"{name} (a fixed ChatTTS speaker seeded by this name)", (ZH, EN))
    for name in ("echo", "alloy", "fable", "onyx", "nova", "shimmer")
)

# The SFT speakers (xinference/model/audio/cosyvoice.py checks `list_available_spks()`;
# the names are listed in doc/source/models/model_abilities/audio.rst). CosyVoice-300M
# itself only clones a reference recording, which Dify cannot send.
_COSYVOICE = (
    Voice("中文女", "中文女 (Chinese, female)", (ZH,)),
    Voice("中文男", "中文男 (Chinese, male)", (ZH,)),
    Voice("英文女", "英文女 (English, female)", (EN,)),
    Voice("英文男", "英文男 (English, male)", (EN,)),
    Voice("日语男", "日语男 (Japanese, male)", (JA,)),
    Voice("粤语女", "粤语女 (Cantonese, female)", (ZH_HANT,)),
    Voice("韩语女", "韩语女 (Korean, female)", (KO,)),
)

# Kokoro-82M's voices (hexgrad/Kokoro-82M `voices/`); xinference/model/audio/kokoro.py
# defaults to af_alloy. Voices outside English need the model launched with `lang_code`.
_KOKORO = _kokoro(
    "af_alloy", "af_heart", "af_aoede", "af_bella", "af_jessica", "af_kore", "af_nicole", "af_nova",
    "af_river", "af_sarah", "af_sky", "am_adam", "am_echo", "am_eric", "am_fenrir", "am_liam",
    "am_michael", "am_onyx", "am_puck", "am_santa", "bf_alice", "bf_emma", "bf_isabella", "bf_lily",
    "bm_daniel", "bm_fable", "bm_george", "bm_lewis", "ef_dora", "em_alex", "em_santa", "ff_siwis",
    "hf_alpha", "hf_beta", "hm_omega", "hm_psi", "if_sara", "im_nicola", "jf_alpha", "jf_gongitsune",
    "jf_nezumi", "jf_tebukuro", "jm_kumo", "pf_dora", "pm_alex", "pm_santa", "zf_xiaobei", "zf_xiaoni",
    "zf_xiaoxiao", "zf_xiaoyi", "zm_yunjian", "zm_yunxi", "zm_yunxia", "zm_yunyang",
)  # fmt: skip

# Kokoro-82M-v1.1-zh: a selection of its 103 voices; xinference/model/audio/kokoro_zh.py
# defaults to zf_001. Any other name from the model card can go into `tts_voice`.
_KOKORO_ZH = _kokoro(
    "zf_001", "zf_002", "zf_003", "zf_004", "zf_005", "zf_006", "zf_007", "zf_008",
    "zm_009", "zm_010", "zm_011", "af_maple", "af_sol", "bf_vale",
)  # fmt: skip

# MeloTTS checks the voice against the checkpoint's speakers (`hps.data.spk2id`,
# xinference/model/audio/melotts.py): one per language, five accents for English v1/v2,
# "EN-Newest" for English v3 (xinference/model/audio/tests/test_melotts.py).
_MELO_ENGLISH = (
    Voice("EN-US", "EN-US (American English)", (EN,)),
    Voice("EN-BR", "EN-BR (British English)", (EN,)),
    Voice("EN_INDIA", "EN_INDIA (Indian English)", (EN,)),
    Voice("EN-AU", "EN-AU (Australian English)", (EN,)),
    Voice("EN-Default", "EN-Default (English)", (EN,)),
)


def _melo(voice_id: str, label: str, language: str) -> tuple[Voice, ...]:
    return (Voice(voice_id, label, (language,)),)


# Qwen3-TTS CustomVoice speakers; xinference/model/audio/qwen3_tts.py compares the voice
# with the model's `get_supported_speakers()` as written, and those names are lower case.
_QWEN3_TTS = (
    Voice("vivian", "vivian (Chinese, female)", (ZH,)),
    Voice("serena", "serena (Chinese, female)", (ZH,)),
    Voice("uncle_fu", "uncle_fu (Chinese, male)", (ZH,)),
    Voice("dylan", "dylan (Beijing Mandarin, male)", (ZH,)),
    Voice("eric", "eric (Sichuan Mandarin, male)", (ZH,)),
    Voice("ryan", "ryan (English, male)", (EN,)),
    Voice("aiden", "aiden (American English, male)", (EN,)),
    Voice("ono_anna", "ono_anna (Japanese, female)", (JA,)),
    Voice("sohee", "sohee (Korean, female)", (KO,)),
)

# VoxCPM reads any voice that is not an OpenAI voice name as a description of the voice
# to design (xinference/model/audio/voxcpm.py), so "default" would be spoken as a style.
_VOXCPM = (Voice("alloy", "alloy (the model's own voice; describe another in tts_voice)", ALL_LANGUAGES),)

_BY_FAMILY: dict[str, tuple[Voice, ...]] = {
    "chattts": _CHATTTS,
    "cosyvoice": _COSYVOICE,
    "kokoro": _KOKORO,
    "kokoro-mlx": _KOKORO,
    "kokoro-zh": _KOKORO_ZH,
    "melotts": _MELO_ENGLISH,
    "qwen3_tts": _QWEN3_TTS,
    "voxcpm": _VOXCPM,
}

_BY_MODEL_NAME: dict[str, tuple[Voice, ...]] = {
    "melotts-english-v3": _melo("EN-Newest", "EN-Newest (English)", EN),
    "melotts-french": _melo("FR", "FR (French)", FR),
    "melotts-japanese": _melo("JP", "JP (Japanese)", JA),
    "melotts-spanish": _melo("ES", "ES (Spanish)", ES),
    "melotts-chinese": _melo("ZH", "ZH (Chinese, mixed with English)", ZH),
    "melotts-korean": _melo("KR", "KR (Korean)", KO),
}

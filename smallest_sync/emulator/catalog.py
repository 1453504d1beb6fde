"""What the emulated service offers: voices, models, languages, formats.

Pure data plus the JSON of ``GET /waves/v1/lightning-v3.1/get_voices``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Tuple

__all__ = [
    "BASE_LANGUAGES",
    "MODELS",
    "OUTPUT_FORMATS",
    "PRO_LANGUAGES",
    "SAMPLE_RATES",
    "VOICES",
    "Voice",
    "WORD_TIMESTAMP_VOICES",
    "languages_for",
    "voices_payload",
]

MODELS: Tuple[str, ...] = ("lightning_v3.1", "lightning_v3.1_pro")
DEFAULT_MODEL = "lightning_v3.1"

#: Every code PROTOCOL.md lists (31 languages plus ``auto``), all allowed on pro.
PRO_LANGUAGES: Tuple[str, ...] = (
    "auto", "en", "hi", "mr", "kn", "ta", "bn", "gu", "te", "ml", "pa", "or",
    "es", "de", "fr", "it", "nl", "sv", "pt", "ru", "el", "fi", "no", "pl",
    "ar", "zh", "id", "ja", "ko", "ms", "tr", "vi",
)  # fmt: skip

#: The emulator's choice of 20 codes for the base model (the docs only say
#: "20 of these"): ``auto``, English, the Indian languages and the European /
#: Arabic ones pipecat maps.
BASE_LANGUAGES: Tuple[str, ...] = (
    "auto", "en", "hi", "mr", "kn", "ta", "bn", "gu", "te", "ml",
    "pa", "es", "de", "fr", "it", "nl", "pt", "ru", "ar", "pl",
)  # fmt: skip

SAMPLE_RATES: Tuple[int, ...] = (8000, 16000, 24000, 44100)
DEFAULT_SAMPLE_RATE = 44100
OUTPUT_FORMATS: Tuple[str, ...] = ("pcm", "wav", "ulaw", "alaw")

#: Voices that emit ``word_timestamp`` frames; others silently emit none.
WORD_TIMESTAMP_VOICES: Tuple[str, ...] = ("meher", "devansh", "kartik", "maithili", "liam", "avery")


@dataclass(frozen=True)
class Voice:
    """One catalogue entry, shaped like the service's ``get_voices`` items."""

    voice_id: str
    display_name: str
    gender: str
    accent: str
    age: str
    languages: Tuple[str, ...]
    emotions: Tuple[str, ...] = ()
    usecases: Tuple[str, ...] = ("conversational",)

    def to_json(self) -> Dict[str, Any]:
        return {
            "voiceId": self.voice_id,
            "displayName": self.display_name,
            "tags": {
                "language": list(self.languages),
                "accent": self.accent,
                "gender": self.gender,
                "age": self.age,
                "emotions": list(self.emotions),
                "usecases": list(self.usecases),
            },
        }


VOICES: Dict[str, Voice] = {
    v.voice_id: v
    for v in (
        Voice("meher", "Meher", "female", "indian", "young", ("english", "hindi"),
              ("happy", "calm"), ("conversational", "customer_support")),
        Voice("devansh", "Devansh", "male", "indian", "young", ("english", "hindi"),
              (), ("conversational", "narration")),
        Voice("kartik", "Kartik", "male", "indian", "middle_aged", ("english", "hindi"),
              ("serious",), ("news", "narration")),
        Voice("maithili", "Maithili", "female", "indian", "young", ("english", "hindi", "marathi"),
              ("warm",), ("conversational", "education")),
        Voice("liam", "Liam", "male", "american", "young", ("english",),
              (), ("conversational", "gaming")),
        Voice("avery", "Avery", "female", "american", "young", ("english",),
              (), ("conversational",)),
        Voice("sophia", "Sophia", "female", "american", "young", ("english",),
              ("friendly",), ("conversational", "customer_support")),
        Voice("emily", "Emily", "female", "british", "middle_aged", ("english",),
              ("calm",), ("narration", "audiobooks")),
        Voice("arjun", "Arjun", "male", "indian", "middle_aged", ("english", "hindi", "tamil"),
              (), ("customer_support", "ivr")),
    )
}  # fmt: skip


def languages_for(model: str) -> Tuple[str, ...]:
    """Language codes a model accepts."""
    return PRO_LANGUAGES if model.endswith("_pro") else BASE_LANGUAGES


def voices_payload() -> Dict[str, Any]:
    """Body of the ``get_voices`` endpoint."""
    return {"voices": [v.to_json() for v in VOICES.values()]}

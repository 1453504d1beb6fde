"""Settings are checked before anything is sent, with clear typed errors."""
from __future__ import annotations

import pytest

from smallest_sync import ConfigurationError, Settings


def test_defaults_match_the_contract() -> None:
    settings = Settings()
    assert (settings.model, settings.voice, settings.language, settings.sample_rate) == (
        "lightning_v3.1_pro", "meher", "en", 24000)
    assert Settings(model="lightning_v3.1").voice == "sophia"


@pytest.mark.parametrize("changes, needle", [
    ({"speed": 0.49}, "speed"), ({"speed": 2.01}, "speed"), ({"speed": float("nan")}, "speed"),
    ({"speed": True}, "speed"), ({"sample_rate": 22050}, "sample_rate"), ({"model": "lightning"}, "model"),
    ({"language": "xx"}, "language"), ({"voice": "no spaces"}, "voice"), ({"voice": ""}, "voice"),
    ({"output_format": "mp3"}, "output_format"),
])
def test_bad_values_raise_configuration_error_naming_the_field(changes: dict, needle: str) -> None:
    with pytest.raises(ConfigurationError, match=needle) as caught:
        Settings(**changes)
    assert isinstance(caught.value, ValueError)


def test_edges_are_allowed() -> None:
    assert Settings(speed=0.5).speed == 0.5 and Settings(speed=2).speed == 2.0
    for rate in (8000, 16000, 24000, 44100):
        assert Settings(sample_rate=rate).sample_rate == rate


def test_replace_validates_and_follows_the_model_default_voice() -> None:
    settings = Settings()
    assert settings.replace(model="lightning_v3.1").voice == "sophia"
    assert settings.replace(voice="liam").replace(model="lightning_v3.1").voice == "liam"
    with pytest.raises(ConfigurationError):
        settings.replace(speed=9)

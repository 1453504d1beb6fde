"""Word timestamps of a multi-request turn on one timeline (PROTOCOL.md's worked examples)."""
from __future__ import annotations

import pytest

from smallest_sync.session.timeline import TurnTimeline


def starts(words: list) -> list:
    timeline = TurnTimeline(24000)
    return [round(timeline.word(request, start, end)[0], 6) for request, start, end in words]


def test_two_requests_follow_the_seed_rule() -> None:
    assert starts([("A", 0.2, 0.5), ("B", 0.1, 0.4)]) == [0.2, 0.6]


def test_three_requests_follow_the_seed_rule() -> None:
    assert starts([("A", 0.0, 1.0), ("B", 0.0, 2.0), ("C", 0.5, 1.0)]) == [0.0, 1.0, 3.5]


def test_the_largest_end_counts_not_the_last() -> None:
    assert starts([("A", 0.0, 0.9), ("A", 0.3, 0.6), ("B", 0.0, 0.1)]) == [0.0, 0.3, 0.9]


def test_audio_length_is_the_offset_when_audio_was_seen() -> None:
    timeline = TurnTimeline(24000)
    timeline.word("A", 0.03, 0.5)
    timeline.audio("A", 12000)
    timeline.audio("A", 2400)  # 0.6 s of audio: trailing silence after the last word
    timeline.audio("B", 100)  # audio of B before its first word is a boundary too
    assert timeline.word("B", 0.03, 0.2) == pytest.approx((0.63, 0.8))


def test_a_new_turn_starts_at_zero() -> None:
    first = TurnTimeline(24000)
    first.word("A", 0.0, 5.0)
    first.word("B", 0.0, 1.0)
    assert TurnTimeline(24000).word("C", 0.25, 0.5) == (0.25, 0.5)

"""The phrase cache: exact replay, keys that follow the sound, a size bound, and
no torn or wrong phrase ever read back, whatever other threads, processes or the
disk are doing."""
from __future__ import annotations

import concurrent.futures
import io
import json
import logging
import multiprocessing
import os
import queue
import shutil
import wave
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st
from hypothesis.extra import numpy as hnp

from smallest_sync.cache import CachedPhrase, PhraseCache, Word
from smallest_sync.errors import ConfigurationError
from smallest_sync.settings import Settings

from .conftest import API_KEY

SERVER = "wss://api.smallest.ai"
RATE = 24000
_fixture_ok = hypothesis_settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)


def key_of(cache: PhraseCache, text: str) -> str:
    return cache.key(text, Settings(), server=SERVER)


def phrase(seed: int, frames: int = 2400) -> Tuple[np.ndarray, List[Word]]:
    """Distinct audio and words for ``seed``, with the words saying which seed it was."""
    pcm = np.random.default_rng(seed).integers(-32768, 32767, frames, dtype=np.int16, endpoint=True)
    return pcm, [(f"w{seed}", 0.0, frames / RATE / 2), (f"n{frames}", frames / RATE / 2, frames / RATE)]


def assert_is(got: CachedPhrase, pcm: np.ndarray, words: List[Word]) -> None:
    assert got.pcm.dtype == np.int16 and np.array_equal(got.pcm, pcm)
    assert got.sample_rate == RATE and list(got.words) == words


# ----- round trip ------------------------------------------------------------

@_fixture_ok
@given(pcm=hnp.arrays(np.int16, st.integers(0, 3000)),
       words=st.lists(st.tuples(st.text(), st.floats(allow_nan=False), st.floats(allow_nan=False)), max_size=5))
def test_samples_and_words_come_back_bit_exact(tmp_path: Path, pcm: np.ndarray, words: List[Word]) -> None:
    cache = PhraseCache(tmp_path)
    key = key_of(cache, "Yes?")
    assert cache.put(key, pcm, RATE, words)
    got = cache.get(key)
    assert got is not None
    assert_is(got, pcm, words)


def test_a_new_cache_on_the_same_directory_replays_and_the_wav_is_playable(tmp_path: Path) -> None:
    pcm, words = phrase(1)
    first = PhraseCache(tmp_path / "nested" / "cache")
    key = key_of(first, "Sorry, I didn't catch that")
    assert first.get(key) is None
    first.put(key, pcm, RATE, words)
    again = PhraseCache(tmp_path / "nested" / "cache")  # the assistant restarted, offline
    got = again.get(key)
    assert got is not None
    assert_is(got, pcm, words)
    assert len(again) == 1 and again.size_bytes() > pcm.nbytes
    with zipfile.ZipFile(tmp_path / "nested" / "cache" / f"{key}.zip") as archive:
        with wave.open(io.BytesIO(archive.read("audio.wav"))) as wav:
            assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, RATE)
            assert np.array_equal(np.frombuffer(wav.readframes(wav.getnframes()), "<i2"), pcm)
    assert again.clear() == 1 and again.get(key) is None and len(again) == 0


# ----- keys ------------------------------------------------------------------

AUDIBLE_CHANGES: Dict[str, Any] = {
    "voice": "liam", "model": "lightning_v3.1", "language": "hi", "speed": 1.5,
    "sample_rate": 16000, "word_timestamps": False, "output_format": "ulaw",
}


def test_every_setting_text_and_server_change_the_key(tmp_path: Path) -> None:
    cache = PhraseCache(tmp_path)
    assert set(AUDIBLE_CHANGES) == set(Settings.__slots__), "a new setting: add it here"
    base = Settings()
    keys = {cache.key("Yes?", base, server=SERVER)}
    keys |= {cache.key("Yes?", base.replace(**{name: value}), server=SERVER) for name, value in AUDIBLE_CHANGES.items()}
    keys |= {cache.key("Yes.", base, server=SERVER), cache.key("Yes? ", base, server=SERVER),
             cache.key("Yes?", base, server="ws://127.0.0.1:8765"), cache.key("Yes?", base, server=SERVER + "/v2")}
    # ... but not the port: an emulator on port 0 listens on a new one each run.
    assert cache.key("Yes?", base, server="ws://127.0.0.1:8765") == cache.key("Yes?", base, server="ws://127.0.0.1:40123")
    assert len(keys) == 1 + len(AUDIBLE_CHANGES) + 4


def test_who_asks_does_not_change_the_key(tmp_path: Path) -> None:
    cache = PhraseCache(tmp_path)
    key = cache.key("Yes?", Settings(), server=SERVER)
    assert cache.key("Yes?", Settings(voice="meher", speed=1), server=SERVER) == cache.key(
        "Yes?", Settings(speed=1.0), server=SERVER)
    for server in (f"wss://{API_KEY}@API.smallest.ai/", f"wss://api.smallest.ai?api_key={API_KEY}", " wss://api.smallest.ai"):
        assert cache.key("Yes?", Settings(), server=server) == key
    assert PhraseCache(tmp_path / "other").key("Yes?", Settings(), server=SERVER) == key


def test_the_api_key_is_never_written(tmp_path: Path) -> None:
    cache = PhraseCache(tmp_path)
    for n, text in enumerate(["Yes?", API_KEY]):
        pcm, words = phrase(n)
        cache.put(cache.key(text.replace(API_KEY, "hi"), Settings(), server=f"wss://{API_KEY}@h/?k={API_KEY}"), pcm, RATE, words)
    files = list(tmp_path.iterdir())
    assert len(files) == 2
    for path in files:
        assert API_KEY.encode() not in path.read_bytes() and API_KEY not in path.name


def test_bad_arguments_raise_configuration_error(tmp_path: Path) -> None:
    bad: List[Any] = [0, -1, True, 1.5]
    for max_bytes in bad:
        with pytest.raises(ConfigurationError, match="max_bytes"):
            PhraseCache(tmp_path, max_bytes=max_bytes)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigurationError, match="not usable.*File exists"):
        PhraseCache(tmp_path / "file")
    cache = PhraseCache(tmp_path)
    with pytest.raises(ConfigurationError):
        cache.get("../../etc/passwd")
    with pytest.raises(ConfigurationError, match="int16"):
        cache.put(key_of(cache, "x"), np.zeros(10, np.float32), RATE)


# ----- size bound ------------------------------------------------------------

def test_least_recently_used_goes_first_and_the_bound_holds(tmp_path: Path) -> None:
    probe = PhraseCache(tmp_path / "probe")
    probe.put(key_of(probe, "a"), *phrase(0)[:1], RATE, phrase(0)[1])
    entry = probe.size_bytes()
    cache = PhraseCache(tmp_path / "cache", max_bytes=3 * entry + entry // 2)  # room for three
    keys = {text: key_of(cache, text) for text in "abcd"}
    for n, text in enumerate("abc"):
        cache.put(keys[text], *phrase(n)[:1], RATE, phrase(n)[1])
    assert cache.get(keys["a"]) is not None  # "a" is now the most recently used
    cache.put(keys["d"], phrase(3)[0], RATE, phrase(3)[1])
    assert [text for text in "abcd" if cache.get(keys[text]) is not None] == ["a", "c", "d"]
    assert len(cache) == 3 and cache.size_bytes() <= cache.max_bytes


def test_a_phrase_larger_than_the_whole_cache_is_not_kept_and_evicts_nothing(tmp_path: Path) -> None:
    cache = PhraseCache(tmp_path, max_bytes=20_000)
    small, big = key_of(cache, "small"), key_of(cache, "big")
    assert cache.put(small, *phrase(0, frames=100)[:1], RATE)
    assert not cache.put(big, phrase(1, frames=20_000)[0], RATE)
    assert cache.get(big) is None and cache.get(small) is not None


# ----- damage ----------------------------------------------------------------

def _remade(good: bytes, change: Dict[str, Any], raw_meta: bytes = b"") -> bytes:
    """``good`` with its description changed (or replaced by ``raw_meta``), CRCs all valid."""
    with zipfile.ZipFile(io.BytesIO(good)) as archive:
        meta, audio = json.loads(archive.read("phrase.json")), archive.read("audio.wav")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("phrase.json", raw_meta or json.dumps({**meta, **change}).encode())
        archive.writestr("audio.wav", audio)
    return out.getvalue()


DAMAGE: Dict[str, Callable[[bytes], bytes]] = {
    "empty": lambda good: b"",
    "truncated": lambda good: good[: len(good) // 2],
    "one byte of audio flipped": lambda good: good[:-300] + bytes([good[-300] ^ 0x55]) + good[-299:],
    "not a zip": lambda good: b"RIFF" + good[4:],
    "bad json": lambda good: _remade(good, {}, raw_meta=b"{not json"),
    "sample rate disagrees": lambda good: _remade(good, {"sample_rate": 16000}),
    "fewer frames than described": lambda good: _remade(good, {"frames": 9999}),
    "another phrase's file": lambda good: _remade(good, {"key": "0" * 64}),
    "newer format": lambda good: _remade(good, {"format": 99}),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_entry_is_a_miss_and_the_next_put_rewrites_it(
        tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    cache = PhraseCache(tmp_path)
    key = key_of(cache, "Yes?")
    pcm, words = phrase(0)
    cache.put(key, pcm, RATE, words)
    path = tmp_path / f"{key}.zip"
    path.write_bytes(DAMAGE[damage](path.read_bytes()))
    with caplog.at_level(logging.WARNING, logger="smallest_sync.cache"):
        assert cache.get(key) is None
    assert "damaged" in caplog.text and not path.exists()
    assert cache.put(key, pcm, RATE, words)
    got = cache.get(key)
    assert got is not None
    assert_is(got, pcm, words)


@_fixture_ok
@given(cut=st.integers(0, 10_000), flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), max_size=3))
def test_any_truncation_or_bit_flip_reads_as_the_original_or_a_miss(tmp_path: Path, cut: int, flips: List[Tuple[int, int]]) -> None:
    cache = PhraseCache(tmp_path)
    key = key_of(cache, "Yes?")
    pcm, words = phrase(0)
    cache.put(key, pcm, RATE, words)
    path = tmp_path / f"{key}.zip"
    data = bytearray(path.read_bytes())
    for at, mask in flips:
        data[at % len(data)] ^= mask
    path.write_bytes(bytes(data[: len(data) - cut % len(data)] if cut else data))
    logging.getLogger("smallest_sync.cache").disabled = True  # thousands of expected warnings
    try:
        got = cache.get(key)
    finally:
        logging.getLogger("smallest_sync.cache").disabled = False
    if got is not None:
        assert_is(got, pcm, words)


# ----- concurrency -----------------------------------------------------------

def _hammer(directory: str, seed: int, rounds: int) -> Tuple[int, int, List[str]]:
    """Put and get four overlapping keys, each written in three variants of different
    lengths; every hit must be exactly one variant. Returns (hits, puts, problems)."""
    cache = PhraseCache(directory, max_bytes=120_000)  # about two entries: constant eviction
    rng = np.random.default_rng(seed)
    hits = puts = 0
    problems: List[str] = []
    for _ in range(rounds):
        text = f"phrase {rng.integers(4)}"
        key = cache.key(text, Settings(), server=SERVER)
        if rng.random() < 0.5:
            variant = int(rng.integers(3))
            puts += cache.put(key, *phrase(variant, frames=8000 + 4000 * variant)[:1], RATE,
                              [(text, 0.0, float(variant))])
            continue
        got = cache.get(key)
        if got is None:
            continue
        hits += 1
        if got.words[0][0] != text:
            problems.append(f"{text!r} read back as {got.words[0][0]!r}")
            continue
        variant = int(got.words[0][2])
        if not np.array_equal(got.pcm, phrase(variant, frames=8000 + 4000 * variant)[0]):
            problems.append(f"{text!r}: audio is not variant {variant}")
    return hits, puts, problems


def test_eight_threads_never_read_a_torn_or_wrong_phrase(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="smallest_sync.cache"):
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = [f.result() for f in [pool.submit(_hammer, str(tmp_path), seed, 300) for seed in range(8)]]
    assert [problem for _, _, problems in results for problem in problems] == []
    assert sum(hits for hits, _, _ in results) > 0 and sum(puts for _, puts, _ in results) > 0
    assert caplog.text == "", "a reader saw a damaged file"
    assert sum(f.stat().st_size for f in tmp_path.iterdir()) <= 120_000


def _process_worker(directory: str, seed: int, barrier: Any, results: "multiprocessing.Queue[Any]") -> None:
    warnings: List[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("smallest_sync.cache").addHandler(handler)
    barrier.wait(60)
    try:
        results.put((seed, *_hammer(directory, seed, 400), warnings))
    except BaseException as exc:
        results.put((seed, 0, 0, [repr(exc)], warnings))


def test_three_processes_never_read_a_torn_or_wrong_phrase(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")  # fork after threads is unsafe
    barrier, results = context.Barrier(3), context.Queue()
    workers = [context.Process(target=_process_worker, args=(str(tmp_path), seed, barrier, results)) for seed in range(3)]
    for worker in workers:
        worker.start()
    try:
        reports = [results.get(timeout=50) for _ in workers]
    except queue.Empty:
        pytest.fail("a worker process did not report")
    finally:
        for worker in workers:
            worker.join(10)
            if worker.is_alive():
                worker.kill()
                worker.join()
    assert [w.exitcode for w in workers] == [0, 0, 0]
    assert [(problems, warnings) for _, _, _, problems, warnings in reports] == [([], [])] * 3
    assert sum(hits for _, hits, _, _, _ in reports) > 0


# ----- a disk that refuses ---------------------------------------------------

def test_a_failed_write_never_raises_and_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path / "cache"
    cache = PhraseCache(directory)
    pcm, words = phrase(0)
    shutil.rmtree(directory)
    directory.write_text("someone put a file here")
    with caplog.at_level(logging.DEBUG, logger="smallest_sync.cache"):
        assert not cache.put(key_of(cache, "Yes?"), pcm, RATE, words)
        assert not cache.put(key_of(cache, "No."), pcm, RATE, words)
        assert cache.get(key_of(cache, "Yes?")) is None
    assert [r.levelno for r in caplog.records if "cannot write" in r.message] == [logging.WARNING, logging.DEBUG]
    assert len(cache) == 0 and cache.size_bytes() == 0 and cache.clear() == 0


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores permissions")
def test_a_read_only_directory_still_replays_and_put_does_not_raise(tmp_path: Path) -> None:
    cache = PhraseCache(tmp_path)
    pcm, words = phrase(0)
    cache.put(key_of(cache, "Yes?"), pcm, RATE, words)
    tmp_path.chmod(0o555)
    try:
        assert not cache.put(key_of(cache, "No."), pcm, RATE, words)
        got = cache.get(key_of(cache, "Yes?"))
        assert got is not None
        assert_is(got, pcm, words)
    finally:
        tmp_path.chmod(0o755)

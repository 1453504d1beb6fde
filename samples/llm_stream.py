"""Speak an LLM's answer while it is still being written: tokens from a generator to ``speak_stream()``.

What it shows:
- ``speak_stream(tokens)`` takes any iterable of text pieces, such as an LLM client's
  stream. It gathers them into sentences and starts speaking after the first few words,
  while the rest is still being generated;
- captions: ``on_word`` prints each word on one line as it is *heard*;
- a timing line at the end: time to first audio against the time the generator finished.

The "LLM" here is a stand-in generator with realistic tokens (pieces of words with their
leading space, punctuation on its own) and a delay per token. Swap in your own.

Run:
    .venv/bin/python samples/llm_stream.py --emulator                # offline, bundled emulator
    SMALLEST_API_KEY=sk_... .venv/bin/python samples/llm_stream.py    # the real service
    .venv/bin/python samples/llm_stream.py --emulator "Any text you like, streamed token by token."
"""
from __future__ import annotations

import argparse
import contextlib
import re
import sys
import time
from typing import Any, Dict, Iterator, Optional

from smallest_sync import SmallestError, Speaker, WordEvent

ANSWER = ("Sure! Streaming speech means the first words play while the rest is still being "
          "written, so nobody waits for the whole reply.")
TOKENS = re.compile(r" ?[A-Za-z]{1,5}|'[a-z]+| ?\d{1,3}|[^\sA-Za-z\d]|\s+")


class FakeLLM:
    """Stand-in for an LLM client's token stream; remembers when it finished."""

    def __init__(self, text: str, seconds_per_token: float) -> None:
        self.text, self.delay = text, seconds_per_token
        self.finished_at: Optional[float] = None

    def __iter__(self) -> Iterator[str]:
        for token in TOKENS.findall(self.text):  # " stre", "aming", "!", "'s": split like a tokenizer
            time.sleep(self.delay)  # the model "thinking": real ones make 20 to 100 tokens a second
            yield token
        self.finished_at = time.monotonic()


def caption(event: WordEvent) -> None:
    # Runs on the library's smallest-events thread, when the word is heard.
    print(event.word, end=" ", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description="Speak a token stream as it is generated, with captions.")
    parser.add_argument("text", nargs="*", help=f"what the stand-in LLM says (default: {ANSWER[:30]}...)")
    parser.add_argument("--emulator", action="store_true", help="run offline against the bundled emulator")
    parser.add_argument("--token-delay", type=float, default=0.05, help="seconds per token (default %(default)s)")
    args = parser.parse_args()
    llm = FakeLLM(" ".join(args.text) or ANSWER, args.token_delay)
    with contextlib.ExitStack() as stack:
        options: Dict[str, Any] = {}  # the real service; the key comes from $SMALLEST_API_KEY
        if args.emulator:
            from smallest_sync.emulator import Emulator, EmulatorConfig

            emulator = stack.enter_context(Emulator(EmulatorConfig(engine="auto")))  # espeak-ng words if installed
            options = {"api_key": "sk_emulator", "base_url": emulator.base_url}
        speaker = stack.enter_context(Speaker(**options, on_word=caption))
        started = time.monotonic()
        utterance = speaker.speak_stream(llm)  # reads the tokens here; returns once all is heard
    print()  # end the caption line (the Speaker is closed: no caption can follow)
    first_audio = utterance.time_to_first_audio
    if first_audio is None or llm.finished_at is None:
        print("nothing was heard", file=sys.stderr)
        return 1
    print(f"first audio after {first_audio:.2f} s; the generator finished after "
          f"{llm.finished_at - started:.2f} s; {utterance.duration:.1f} s of speech")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C: speak_stream() silenced the speech, the with-block closed it
        print()
        sys.exit(130)
    except SmallestError as exc:  # no API key, no audio device, the network: one line, no traceback
        print(f"\nerror: {exc}", file=sys.stderr)
        sys.exit(1)

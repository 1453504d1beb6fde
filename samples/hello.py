"""The plain script: say hello, hear it, done.

Run:  .venv/bin/python samples/hello.py             (real service: export SMALLEST_API_KEY=sk_...)
      .venv/bin/python samples/hello.py --emulator  (offline, with the bundled emulator)
"""
import contextlib
import sys
from typing import Any, Dict

from smallest_sync import Speaker


def main() -> None:
    with contextlib.ExitStack() as stack:
        options: Dict[str, Any] = {}
        if "--emulator" in sys.argv:
            from smallest_sync.emulator import Emulator, EmulatorConfig

            emulator = stack.enter_context(Emulator(EmulatorConfig(engine="auto")))
            options = {"api_key": "sk_emulator", "base_url": emulator.base_url}
        with Speaker(**options) as speaker:
            utterance = speaker.speak("Hello! This is smallest sync speaking.")
            first = utterance.time_to_first_audio or 0.0  # None only when nothing was played
            print(f"spoke {utterance.duration:.1f} s; first audio after {first * 1000:.0f} ms")


if __name__ == "__main__":
    main()

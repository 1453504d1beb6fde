"""A Raspberry Pi voice assistant loop: push to talk, instant prompts, streamed answers, barge-in.

What it shows:
- prompts ("Yes?", "Sorry, I didn't catch that.", ...) come from an on-disk phrase cache
  (``Speaker(cache_dir=...)``): after the first time they play at once, with no network.
  ``--warm-cache`` synthesizes them all before listening (run it once at install time);
- a talk key that barges in: pressing it while the assistant talks silences it at once
  (``interrupt()``) and listens again. A gpiozero Button on a GPIO pin, or the keyboard
  (Enter = talk/stop, q = quit; a line typed before Enter is the question itself);
- answers streamed from an LLM (a stand-in generator here) with ``say_stream()``: speech
  starts after the first words, and captions print as each word is heard (``on_word``);
- a clean shutdown on q or Ctrl-C: ``speaker.close()`` joins the library's threads.

There is no speech recognition: after "Yes?" you type what you would say (keyboard), or
the next question of a fixed list is "heard" (button). Plug in your recogniser there.

Run:
    .venv/bin/python samples/pi_assistant.py --emulator               # offline, bundled emulator
    SMALLEST_API_KEY=sk_... .venv/bin/python samples/pi_assistant.py   # the real service
    .venv/bin/python samples/pi_assistant.py --button-pin 17          # button GPIO17-GND (pip install gpiozero)
    .venv/bin/python samples/pi_assistant.py --warm-cache </dev/null  # cache every prompt, then exit
    .venv/bin/python samples/pi_assistant.py --emulator --smoke OUT.json  # self-test, see smoke_script()
"""
from __future__ import annotations

import argparse
import contextlib
import faulthandler
import itertools
import json
import os
import queue
import re
import select
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from smallest_sync import EndEvent, SmallestError, Speaker, Utterance, WordEvent

PROMPTS = {
    "listening": "Yes?",
    "missed": "Sorry, I didn't catch that.",
    "stopping": "Okay, stopping.",
    "goodbye": "Goodbye!",
}
ANSWERS = {  # the stand-in LLM's canned answers, keyed by a word of the question
    "weather": "It looks sunny and mild today. A good day for a walk.",
    "time": "It is time for a cup of tea. The clock on the wall knows the rest.",
    "story": ("Once upon a time, a small robot lived in a garden shed. Every morning it counted the "
              "tomatoes, watered the beans and told the bees a joke. The bees never laughed, but "
              "they always came back the next day to hear another one."),
}
DONT_KNOW = "I am only a sample, so I know about the weather, the time and one story."
QUESTIONS = ["What is the weather like?", "Tell me a story.", "What time is it?"]  # "heard" after a button press
STOP_WORDS = ("stop", "never mind", "cancel")
LISTEN_S = 30.0  # how long to wait for a question after "Yes?"
DEFAULT_CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "smallest-sync", "phrases")

#: What the talk key and the keyboard send to the loop: a line ("" = the key alone), None = quit.
Input = Optional[str]


def answer_for(question: str) -> str:
    return next((text for key, text in ANSWERS.items() if key in question.lower()), DONT_KNOW)


def fake_llm(question: str) -> Iterator[str]:
    """Stand-in for a streaming LLM client: the answer as tokens, each after a short delay."""
    for token in re.findall(r" ?\w{1,4}|[^\w\s]", answer_for(question)):  # pieces of words, punctuation alone
        time.sleep(0.03)  # generation time: speech starts long before the last token
        yield token


class Assistant:
    """The loop: talk key → "Yes?" → a question → a streamed answer; the key again barges in."""

    def __init__(self, speaker_options: Dict[str, Any], inputs: "queue.Queue[Input]",
                 questions: Optional[Iterator[str]]) -> None:
        self.inputs = inputs
        self.questions = questions  # a button has nothing to type on: it "hears" these instead
        self.replies: List[Tuple[str, Utterance]] = []
        self.log: List[Dict[str, Any]] = []  # what happened, for --smoke
        self.changed = threading.Condition()  # notified at each word heard and each end (for --smoke)
        self.speaker = Speaker(**speaker_options, on_word=self.caption, on_end=self.ended)

    # ----- speech events (smallest-events thread: print, never block) --------------
    def caption(self, event: WordEvent) -> None:
        print(("assistant: " if event.index == 0 else "") + event.word, end=" ", flush=True)
        with self.changed:
            self.changed.notify_all()

    def ended(self, event: EndEvent) -> None:
        if event.utterance.words:
            print("[interrupted]" if event.utterance.interrupted else "", flush=True)
        with self.changed:
            self.changed.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(predicate, timeout)

    # ----- the loop (main thread) ---------------------------------------------------
    def warm(self) -> None:
        started = time.monotonic()
        for text in PROMPTS.values():
            self.speaker.synthesize(text, timeout=30)  # stored in the phrase cache on the way
        print(f"{len(PROMPTS)} prompts cached ({time.monotonic() - started:.1f} s)", flush=True)

    def run(self) -> None:
        reply: Optional[Utterance] = None
        while True:
            key = self.inputs.get()  # the talk key; Ctrl-C still interrupts this wait
            if key is None:
                break
            try:
                if reply is not None and not reply.done:
                    self.speaker.interrupt()  # barge-in: silent now. They are already talking: no "Yes?"
                    self.note("barge-in")
                elif not key:
                    self.prompt("listening")
                question = key or self.listen()  # a line typed with the key is the question itself
                if question is None:
                    break
                reply = self.answer(question)
            except SmallestError as exc:  # the network went away, say: keep listening, try again later
                print(f"error: {exc}", flush=True)
        self.speaker.interrupt()
        with contextlib.suppress(SmallestError):  # leaving anyway
            self.prompt("goodbye")

    def listen(self) -> Input:
        if self.questions is not None:
            question = next(self.questions)
            print(f"(heard) {question}", flush=True)
            return question
        try:
            return self.inputs.get(timeout=LISTEN_S)  # a typed line stands in for speech
        except queue.Empty:
            return ""

    def answer(self, question: str) -> Optional[Utterance]:
        self.note("heard", text=question)
        if not question.strip():
            self.prompt("missed")
        elif any(word in question.lower() for word in STOP_WORDS):
            self.prompt("stopping")
        else:
            reply = self.speaker.say_stream(fake_llm(question))  # returns at once: the loop watches the key
            self.replies.append((question, reply))
            return reply
        return None

    def prompt(self, name: str) -> None:
        utterance = self.speaker.speak(PROMPTS[name])  # from the phrase cache once said before: no network
        self.note("prompt", text=utterance.text, cached=utterance.cached, interrupted=utterance.interrupted)

    def note(self, event: str, **fields: Any) -> None:
        self.log.append({"event": event, "at": time.monotonic(), **fields})

    def report(self) -> Dict[str, Any]:
        replies = [{"question": q, "answer": answer_for(q), "words": [w.word for w in u.words],
                    "interrupted": u.interrupted} for q, u in self.replies]
        return {"events": self.log, "replies": replies}


class Keyboard:
    """Reads stdin lines on a named thread. select() also watches a pipe, so close() can wake it."""

    def __init__(self, inputs: "queue.Queue[Input]") -> None:
        self.inputs = inputs
        self._wake_r, self._wake_w = os.pipe()
        # Daemon: a thread stuck in a read must never keep the program alive.
        self.thread = threading.Thread(target=self._read, name="pi-keyboard", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        pending = b""
        while True:
            ready, _, _ = select.select([sys.stdin.fileno(), self._wake_r], [], [])
            if self._wake_r in ready:
                return
            data = os.read(sys.stdin.fileno(), 4096)
            if not data:  # end of input (Ctrl-D, or stdin is /dev/null): quit
                self.inputs.put(None)
                return
            *lines, pending = (pending + data).split(b"\n")
            for line in lines:
                text = line.decode(errors="replace").strip()
                self.inputs.put(None if text.lower() == "q" else text)

    def close(self) -> None:
        os.write(self._wake_w, b"x")
        self.thread.join(2.0)
        os.close(self._wake_r)
        os.close(self._wake_w)


def make_button(pin: int, inputs: "queue.Queue[Input]") -> Any:
    from gpiozero import Button  # type: ignore  # optional and untyped: pip install gpiozero

    button = Button(pin, bounce_time=0.05)  # wired from the pin to GND; the internal pull-up does the rest
    button.when_pressed = lambda: inputs.put("")  # runs on a gpiozero thread: just hand the press over
    return button


def smoke_script(assistant: Assistant, result: Dict[str, Any]) -> None:
    """``--smoke``: a user presses and "says" things, reacting to what is heard.

    Ask for a story, barge in after a few words, pause (the assistant must stay silent),
    say "Stop.", press and say nothing, ask about the weather and hear it all, quit.
    """
    put, replies = assistant.inputs.put, assistant.replies
    put("")
    put("Tell me a story.")
    if assistant.wait_for(lambda: len(replies) == 1 and len(replies[0][1].words) >= 3, 30):
        put("")  # barge in
        time.sleep(0.8)  # the user takes a moment to speak (simulated, not synchronisation)
        for line in ("Stop.", "", "", "", "What is the weather like?"):
            put(line)
        result["ok"] = assistant.wait_for(lambda: len(replies) == 2 and replies[1][1].done, 30)
    put(None)


def main() -> int:
    parser = argparse.ArgumentParser(description="A push-to-talk voice assistant loop with barge-in.")
    parser.add_argument("--emulator", action="store_true", help="run offline against the bundled emulator")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE, help="phrase cache (default %(default)s)")
    parser.add_argument("--warm-cache", action="store_true", help="synthesize every prompt before listening")
    parser.add_argument("--button-pin", type=int, help="GPIO pin of the talk button (needs gpiozero)")
    parser.add_argument("--smoke", metavar="FILE", help="self-test: scripted presses, report to FILE (JSON)")
    args = parser.parse_args()
    if args.smoke:
        faulthandler.dump_traceback_later(60, exit=True)  # never hang a test run
    inputs: "queue.Queue[Input]" = queue.Queue()
    with contextlib.ExitStack() as stack:
        options: Dict[str, Any] = {"cache_dir": os.path.expanduser(args.cache_dir)}
        if args.emulator:
            from smallest_sync.emulator import Emulator, EmulatorConfig

            emulator = stack.enter_context(Emulator(EmulatorConfig(engine="auto")))
            options.update(api_key="sk_emulator", base_url=emulator.base_url)
        button = None
        if args.button_pin is not None and not args.smoke:
            try:
                button = make_button(args.button_pin, inputs)
                stack.callback(button.close)
            except ImportError:
                print("no gpiozero (pip install gpiozero): using the keyboard instead", file=sys.stderr)
        try:
            assistant = Assistant(options, inputs, itertools.cycle(QUESTIONS) if button is not None else None)
            stack.callback(assistant.speaker.close)  # runs after the input sources below are closed
            if args.warm_cache:
                assistant.warm()
        except SmallestError as exc:  # no API key, no audio device, no network to warm the cache from
            print(f"error: {exc}", file=sys.stderr)
            return 1
        result: Dict[str, Any] = {"ok": False}
        if args.smoke:
            script = threading.Thread(target=smoke_script, args=(assistant, result), name="pi-smoke", daemon=True)
            script.start()
            stack.callback(script.join, 5.0)
        else:
            if button is not None:
                print(f"Press the button on GPIO{args.button_pin} to talk, again to interrupt.", flush=True)
            if button is None or sys.stdin.isatty():  # a service with no terminal uses the button alone
                stack.callback(Keyboard(inputs).close)
                print("Enter = talk, then type what you would say. Enter while I talk = stop. q = quit.", flush=True)
        assistant.run()
    if args.smoke:
        with open(args.smoke, "w") as file:
            json.dump({**result, **assistant.report()}, file, indent=1)
        return 0 if result["ok"] else 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C: main()'s with-block has already closed everything
        print()
        sys.exit(130)

"""A Tkinter reader: type text, press Speak, watch each word light up as it is heard.

What it shows:
- the window never freezes: Speak queues the text with ``say()`` (returns at once),
  Stop calls ``interrupt()`` (silence now, from the Tk thread);
- word events land on Tk's own thread through ``TkDelivery``: ``on_word`` fires when a
  word is *heard*, and the handler highlights it in the text box with a Text tag;
- voice and speed go to ``update()`` before each request (same socket, no reconnect);
- a status line (connecting, speaking, done, stopped, error) instead of tracebacks;
- ``speaker.close()`` when the window closes, so every library thread is joined.

Run:
    .venv/bin/python samples/tk_reader.py --emulator                # offline, bundled emulator
    SMALLEST_API_KEY=sk_... .venv/bin/python samples/tk_reader.py    # the real service
    .venv/bin/python samples/tk_reader.py --emulator --smoke DIR     # self-test, see Smoke below

Keys: Ctrl+Enter speaks, Escape stops. Any voice id can be typed into the voice box;
the listed ones report word timings (needed for the highlight).
"""
from __future__ import annotations

import argparse
import contextlib
import faulthandler
import json
import logging
import os
import sys
import time
import tkinter as tk
from tkinter import ttk
from typing import Any, Callable, Dict, List, Optional

from smallest_sync import EndEvent, ErrorEvent, SmallestError, Speaker, StartEvent, Utterance, WordEvent
from smallest_sync.gui import TkDelivery, WordFinder

VOICES = ["meher", "liam", "avery", "devansh", "kartik", "maithili"]
TEXT = ("Smallest sync reads this text aloud, and the window highlights every word "
        "as it is heard. Press Stop at any moment to silence it at once.")
HIGHLIGHT = "#ffd54f"


class Reader:
    def __init__(self, root: tk.Tk, speaker_options: Dict[str, Any]) -> None:
        self.root = root
        root.title("smallest_sync reader (Tk)")
        self.current: Optional[Utterance] = None  # what Speak started last
        self.finder = WordFinder("")

        frame = ttk.Frame(root, padding=10)
        frame.pack(fill="both", expand=True)
        self.text = tk.Text(frame, width=60, height=8, wrap="word", font=("Helvetica", 13), undo=True)
        self.text.insert("1.0", TEXT)
        self.text.tag_configure("heard", background=HIGHLIGHT)
        self.text.pack(fill="both", expand=True)

        controls = ttk.Frame(frame, padding=(0, 8, 0, 4))
        controls.pack(fill="x")
        ttk.Label(controls, text="Voice").pack(side="left")
        self.voice = ttk.Combobox(controls, values=VOICES, width=12)  # editable: any voice id
        self.voice.set(VOICES[0])
        self.voice.pack(side="left", padx=(4, 12))
        ttk.Label(controls, text="Speed").pack(side="left")
        self.speed = tk.StringVar(value="1.0")
        ttk.Spinbox(controls, from_=0.5, to=2.0, increment=0.1, width=5, format="%.1f",
                    textvariable=self.speed).pack(side="left", padx=4)
        self.stop_button = ttk.Button(controls, text="Stop", command=self.stop)
        self.stop_button.pack(side="right")
        self.speak_button = ttk.Button(controls, text="Speak", command=self.speak)
        self.speak_button.pack(side="right", padx=4)

        self.status = tk.StringVar(value="ready")
        status_line = ttk.Label(frame, textvariable=self.status, anchor="w", width=1)  # width=1: a long error
        status_line.bind("<Configure>", lambda e: status_line.configure(wraplength=e.width))  # wraps, not widens
        status_line.pack(fill="x")
        root.bind("<Control-Return>", lambda _: self.speak())
        root.bind("<Escape>", lambda _: self.stop())
        root.protocol("WM_DELETE_WINDOW", self.close)

        # Speaker callbacks run on the library's smallest-events thread, where Tk must
        # not be touched; TkDelivery queues them and runs them from Tk's own loop.
        self.delivery = TkDelivery(root)
        wrap = self.delivery.wrap
        self.speaker: Optional[Speaker] = None
        try:
            self.speaker = Speaker(**speaker_options, on_start=wrap(self.on_start), on_word=wrap(self.on_word),
                                   on_end=wrap(self.on_end), on_error=wrap(self.on_error))
        except SmallestError as exc:  # no API key, no audio device: say so in the window
            self.status.set(f"error: {exc}")
            self.speak_button.state(["disabled"])

    # ----- buttons (Tk thread; none of these calls blocks) -----------------------
    def speak(self) -> None:
        text = self.text.get("1.0", "end-1c")
        if self.speaker is None or not text.strip():
            return
        try:
            self.speaker.interrupt()  # Speak while speaking starts over
            self.speaker.update(voice=self.voice.get().strip() or None, speed=float(self.speed.get()))
            self.current = self.speaker.say(text)
        except (SmallestError, ValueError) as exc:  # a malformed voice id or speed, say
            self.status.set(f"error: {exc}")
            return
        self.finder = WordFinder(text)
        self.text.tag_remove("heard", "1.0", "end")
        self.text.configure(state="disabled")  # edits would shift the spans being highlighted
        self.status.set("connecting…")

    def stop(self) -> None:
        if self.speaker is not None:
            self.speaker.interrupt()  # on_end follows, with the utterance interrupted

    def close(self) -> None:
        if self.speaker is not None:
            self.speaker.close()  # drops speech, closes the socket, joins the library's threads
        self.delivery.close()
        self.root.destroy()

    # ----- speech events (delivered on the Tk thread) -----------------------------
    # Events of an utterance that Speak has since replaced are ignored.
    def on_start(self, event: StartEvent) -> None:
        if event.utterance is self.current:
            self.status.set("speaking")

    def on_word(self, event: WordEvent) -> None:
        span = self.finder.find(event.word) if event.utterance is self.current else None
        if span is None:
            return  # keep the last highlight rather than guess
        start, end = (f"1.0 + {i} chars" for i in span)
        self.text.tag_remove("heard", "1.0", "end")
        self.text.tag_add("heard", start, end)
        self.text.see(end)

    def on_end(self, event: EndEvent) -> None:
        utterance = event.utterance
        if utterance is not self.current:
            return
        self.current = None
        self.text.tag_remove("heard", "1.0", "end")
        self.text.configure(state="normal")
        if utterance.error is not None:
            self.status.set(f"error: {utterance.error}")
        else:
            self.status.set("stopped" if utterance.interrupted else "done")

    def on_error(self, event: ErrorEvent) -> None:
        if event.utterance is None or event.utterance is self.current:
            self.status.set(f"error: {event.error}")


class Smoke:
    """``--smoke DIR``: drive the real widgets like a user would, for tests/test_samples_gui.py.

    Fills the text, clicks Speak, waits (with ``after``, never blocking Tk) until a few
    words have been highlighted, saves DIR/tk_reader.png, clicks Stop, checks the
    window went quiet, writes DIR/tk_reader.json and closes the window.
    """

    POLL_MS, WORDS, QUIET_MS, TIMEOUT = 20, 3, 500, 30.0

    def __init__(self, reader: Reader, out_dir: str) -> None:
        self.reader, self.dir = reader, out_dir
        self.exit_code = 1
        self.deadline = time.monotonic() + self.TIMEOUT
        self.result: Dict[str, Any] = {"text": TEXT, "highlight": HIGHLIGHT, "words": [], "statuses": []}
        statuses: List[str] = self.result["statuses"]
        reader.status.trace_add("write", lambda *_: statuses.append(reader.status.get()))
        reader.root.report_callback_exception = lambda *exc: self.fail("a Tk callback raised", exc[1])
        reader.root.after(100, self.click_speak)

    def click_speak(self) -> None:
        text = self.reader.text
        text.delete("1.0", "end")
        text.insert("1.0", TEXT)
        self.result["spoke_at"] = time.monotonic()
        self.reader.speak_button.invoke()
        self.poll(self.until_words_heard)

    def poll(self, step: Callable[[], None]) -> None:
        if time.monotonic() > self.deadline:
            self.fail(f"timed out in {step.__name__}; status {self.reader.status.get()!r}")
        elif self.reader.status.get().startswith("error"):
            self.fail(self.reader.status.get())
        else:
            step()

    def until_words_heard(self) -> None:
        text, words = self.reader.text, self.result["words"]
        ranges = text.tag_ranges("heard")
        heard = text.get(ranges[0], ranges[1]) if ranges else ""
        if heard and (not words or words[-1] != heard):
            words.append(heard)
        if len(words) >= self.WORDS and heard and self.screenshot():
            self.result["stopped_at"] = time.monotonic()
            self.reader.stop_button.invoke()
            self.reader.root.after(self.QUIET_MS, self.poll, self.until_quiet)
        else:
            self.reader.root.after(self.POLL_MS, self.poll, self.until_words_heard)

    def screenshot(self) -> bool:
        """Saves the window if the highlight shows on the X screen (a redraw may lag)."""
        from PIL import ImageGrab  # test-only (the dev extra): Tk cannot capture itself

        root = self.reader.root
        root.update_idletasks()
        x, y, width, height = root.winfo_rootx(), root.winfo_rooty(), root.winfo_width(), root.winfo_height()
        image = ImageGrab.grab(bbox=(x, y, x + width, y + height), xdisplay=root.winfo_screen()).convert("RGB")
        rgb = tuple(int(HIGHLIGHT[i:i + 2], 16) for i in (1, 3, 5))
        if not any(colour == rgb for _, colour in image.getcolors(width * height) or ()):
            return False
        self.result["window"] = [width, height]
        self.result["screenshot"] = path = os.path.join(self.dir, "tk_reader.png")
        image.save(path)
        return True

    def until_quiet(self) -> None:
        reader = self.reader
        self.result["quiet_until"] = time.monotonic()
        self.result["after_stop"] = {
            "status": reader.status.get(), "highlighted": len(reader.text.tag_ranges("heard")),
            "idle": reader.speaker is not None and reader.speaker.wait_idle(0),
        }
        if self.result["after_stop"] != {"status": "stopped", "highlighted": 0, "idle": True}:
            return self.fail(f"not quiet after Stop: {self.result['after_stop']}")
        with open(os.path.join(self.dir, "tk_reader.json"), "w") as file:
            json.dump(self.result, file, indent=1)
        self.exit_code = 0
        reader.close()

    def fail(self, message: str, error: Optional[BaseException] = None) -> None:
        print(f"tk_reader smoke: FAILED: {message}" + (f": {error!r}" if error else ""), file=sys.stderr)
        self.reader.close()


def main() -> int:
    parser = argparse.ArgumentParser(description="A Tk reader with live word highlighting.")
    parser.add_argument("--emulator", action="store_true", help="run offline against the bundled emulator")
    parser.add_argument("--smoke", metavar="DIR",
                        help="self-test: click through, save a screenshot and a JSON result in DIR")
    args = parser.parse_args()
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")  # library warnings to the console
    if args.smoke:
        os.makedirs(args.smoke, exist_ok=True)
        faulthandler.dump_traceback_later(60, exit=True)  # the hard bound, should Tk's loop itself hang
    with contextlib.ExitStack() as stack:
        options: Dict[str, Any] = {}  # the real service; the key comes from $SMALLEST_API_KEY
        if args.emulator:
            from smallest_sync.emulator import Emulator, EmulatorConfig

            emulator = stack.enter_context(Emulator(EmulatorConfig(engine="auto")))  # espeak-ng words if installed
            options = {"api_key": "sk_emulator", "base_url": emulator.base_url}
        root = tk.Tk()
        reader = Reader(root, options)
        smoke = Smoke(reader, args.smoke) if args.smoke else None
        root.mainloop()
    return smoke.exit_code if smoke else 0


if __name__ == "__main__":
    sys.exit(main())

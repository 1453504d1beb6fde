"""``smallest-say``: speak text from the command line, the way ``say``/``espeak`` do.

Exit codes (stable, for scripts):
    0 spoken; 1 other error; 2 usage; 3 no or refused API key; 4 audio device;
    5 network or timeout; 6 the service refused the request (or answered nonsense); 130 Ctrl-C.

Threads: the main thread parses, queues each piece of text with ``Speaker.say()``
and waits (:class:`_Session`); the Speaker's ``smallest-events`` thread runs the
captions and progress callbacks; with stdin as the source, ``smallest-say-stdin``
reads it (see :mod:`smallest_sync.cli_input`). Errors are one line on stderr;
``-v`` adds logging and tracebacks.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import queue
import sys
from typing import Iterator, NoReturn, Optional, Sequence, Set, Union

from .. import __version__
from ..playback.device import DeviceOutput, list_output_devices
from ..playback.outputs import WavOutput
from .input import Item, Source, choose_source
from .output import Captions, Progress, discard_closed_stream, same_terminal, voice_table
from ..errors import (
    APIError,
    AudioDeviceError,
    AuthenticationError,
    ConfigurationError,
    ProtocolError,
    SmallestConnectionError,
    SmallestError,
    SynthesisTimeout,
)
from ..events import EndEvent, StartEvent, WordEvent
from ..settings import API_KEY_ENV, DEFAULT_BASE_URL, DEFAULT_VOICES, LANGUAGES, MODELS, SAMPLE_RATES, SPEED_RANGE, resolve_api_key
from ..speaker import Speaker
from ..utterance import Utterance
from ..voices import list_voices

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_AUTH, EXIT_DEVICE, EXIT_NETWORK, EXIT_API, EXIT_CTRL_C = 0, 1, 2, 3, 4, 5, 6, 130
_EMULATOR_KEY = "sk_emulator"
_TICK = 0.25  # seconds between redraws of the live progress line

logger = logging.getLogger(__name__)

NO_KEY_HELP = (f"no API key: export {API_KEY_ENV}=sk_... (get one at https://waves.smallest.ai, "
               "API keys in the dashboard), or try it offline with --emulator")

_EPILOG = f"""\
text:
  smallest-say Hello there.      the arguments
  smallest-say -f story.txt      a file, sentence by sentence (a progress line on a terminal)
  cmd | smallest-say             stdin, one line at a time, each spoken as soon as it arrives
                                 ("-" reads stdin even from a terminal; end with Ctrl-D)

--captions prints each word on stdout when it is heard, a line per sentence (per input
line for stdin); with --out, when it is written, which is as fast as audio arrives.
Voices without word timings print each sentence once it has been heard.

The API key comes from ${API_KEY_ENV}. Ctrl-C silences at once.
exit codes: 0 ok, 1 other error, 2 usage, 3 no or refused API key, 4 audio device,
            5 network or timeout, 6 service error, 130 Ctrl-C"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """A usage error is one line (and exit 2), like every other error here."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _speed(value: str) -> float:
    low, high = SPEED_RANGE
    try:
        speed = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"speed must be a number; got {value!r}") from None
    if not low <= speed <= high:
        raise argparse.ArgumentTypeError(f"speed must be between {low} and {high}; got {value}")
    return speed


def _device(spec: str) -> Union[int, str]:
    if not spec.strip():
        raise argparse.ArgumentTypeError("device must be an index or a name")
    return int(spec) if spec.isdigit() else spec


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="smallest-say",
        description="Speak text through Smallest AI's Waves live TTS.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("text", nargs="*", help='what to say; "-" or a pipe: read stdin line by line')
    parser.add_argument("-f", "--file", metavar="FILE", help="read the text from FILE (UTF-8)")
    parser.add_argument("--voice", help="voice id (default: the model's, e.g. meher; see --list-voices)")
    parser.add_argument("--model", choices=MODELS, default="lightning_v3.1_pro")
    parser.add_argument("--language", choices=LANGUAGES, default="en", metavar="CODE",
                        help="language code: " + " ".join(LANGUAGES))
    parser.add_argument("--speed", type=_speed, help=f"{SPEED_RANGE[0]} to {SPEED_RANGE[1]} (default 1.0)")
    parser.add_argument("--sample-rate", type=int, choices=SAMPLE_RATES, default=None,
                        help="rate asked of the service (default: 24000, or one the device plays as it is)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--device", type=_device, help="output device index or (part of its) name")
    where.add_argument("-o", "--out", metavar="FILE.wav", help="write a WAV file instead of playing")
    parser.add_argument("--captions", action="store_true", help="print each word on stdout as it is heard")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress line on stderr (default: for -f on a terminal that is not showing captions)")
    parser.add_argument("--list-devices", action="store_true", help="list output devices and exit")
    parser.add_argument("--list-voices", action="store_true", help="list the model's voices and exit")
    parser.add_argument("--emulator", action="store_true", help="run fully offline against the bundled emulator")
    parser.add_argument("--base-url", default=None, help=f"service URL (default {DEFAULT_BASE_URL})")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details and show tracebacks")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


@contextlib.contextmanager
def _emulator() -> Iterator[str]:
    try:
        from ..emulator import Emulator, EmulatorConfig
    except ImportError as exc:
        raise ConfigurationError(
            f"the emulator needs the 'emulator' extra: pip install 'smallest-sync[emulator]' ({exc})") from exc
    with Emulator(EmulatorConfig(engine="auto")) as emulator:
        yield emulator.base_url


@contextlib.contextmanager
def _native_stderr_silenced(enabled: bool = True) -> Iterator[None]:
    """Hide what C libraries print on file descriptor 2 (ALSA and JACK probe
    messages from PortAudio's start-up), which would bury our one-line errors."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _list_devices(quiet: bool) -> int:
    with _native_stderr_silenced(quiet):
        devices = list_output_devices()
    for device in devices:
        mark = "*" if device["is_default"] else " "
        rates = "/".join(str(rate) for rate in device["service_rates"]) or "none (resampled)"
        print(f"{mark} {device['index']:3d}  {device['name']}  "
              f"({device['host_api']}, {device['default_sample_rate']:.0f} Hz; service rates played as they are: {rates})")
    if not devices:
        print("smallest-say: error: no output devices", file=sys.stderr)
        return EXIT_DEVICE
    return EXIT_OK


class _Session:
    """Speaks a source's pieces, one utterance each, and waits until all are heard.

    The main thread runs :meth:`run`. Its inbox receives text from the source
    (directly, or from the stdin thread) and ended utterances from the events
    thread, so it reacts at once to either: a new line is queued while earlier
    ones play, and a failed utterance ends the run even while stdin is silent.
    """

    def __init__(self, source: Source, captions: Optional[Captions], progress: Optional[Progress]) -> None:
        self._source = source
        self.captions = captions
        self.progress = progress
        self._inbox: "queue.Queue[Union[Item, Utterance]]" = queue.Queue()

    # The Speaker's callbacks: they run on its events thread, in the order heard.
    def on_word(self, event: WordEvent) -> None:
        if self.captions is not None:
            self.captions.word(event)

    def on_start(self, event: StartEvent) -> None:
        if self.progress is not None:
            self.progress.started(event.utterance)

    def on_end(self, event: EndEvent) -> None:
        if self.captions is not None:
            self.captions.ended(event.utterance)
        if self.progress is not None:
            self.progress.ended(event.utterance)
        self._inbox.put(event.utterance)

    def run(self, speaker: Speaker) -> int:
        """Main thread. Returns the number of pieces spoken; raises the first error.

        Ctrl-C silences the speaker before the KeyboardInterrupt goes on.
        """
        try:
            # Started only now, after the Speaker opened its output: if that failed,
            # stdin is still unread (scripts/say runs again with --out on it).
            self._source.start(self._inbox.put)
            pending: Set[Utterance] = set()
            spoken, finished = 0, False
            while not finished or pending:
                try:
                    item = self._inbox.get(timeout=_TICK)
                except queue.Empty:
                    if self.progress is not None:
                        self.progress.tick()
                    continue
                if isinstance(item, Utterance):
                    pending.discard(item)
                    if item.error is not None:
                        raise item.error
                elif isinstance(item, BaseException):
                    raise item
                elif item is None:
                    finished = True
                else:
                    pending.add(speaker.say(item))
                    spoken += 1
            return spoken
        except KeyboardInterrupt:
            speaker.interrupt()
            raise
        finally:
            if self.progress is not None:
                self.progress.finish()


def _progress(args: argparse.Namespace, source: Source) -> Optional[Progress]:
    """A progress line when asked for, or by default for -f on a terminal. Live (redrawn
    in place) on a terminal, unless captions share it: then a line per piece."""
    shared = args.captions and same_terminal(sys.stdout, sys.stderr)
    wanted = args.progress if args.progress is not None else (
        args.file is not None and sys.stderr.isatty() and not shared)
    if not wanted:
        return None
    return Progress(sys.stderr, live=sys.stderr.isatty() and not shared, unit=source.unit, total=source.total)


def run(args: argparse.Namespace) -> int:
    """Main thread: do what ``args`` ask; returns the exit code, raises SmallestError."""
    if args.list_devices:
        return _list_devices(quiet=not args.verbose)
    source = None if args.list_voices else choose_source(args.text, args.file)  # usage errors before anything starts
    with contextlib.ExitStack() as stack:
        api_key = resolve_api_key()
        base_url = args.base_url or DEFAULT_BASE_URL
        if args.emulator:
            base_url = stack.enter_context(_emulator())
            api_key = api_key or _EMULATOR_KEY
        elif not api_key:
            raise AuthenticationError(NO_KEY_HELP)
        if source is None:
            voices = list_voices(api_key, model=args.model, base_url=base_url)
            print("\n".join(voice_table(voices, default=DEFAULT_VOICES[args.model])))
            return EXIT_OK
        session = _Session(source, Captions(sys.stdout) if args.captions else None, _progress(args, source))
        with _native_stderr_silenced(not args.verbose):
            speaker = stack.enter_context(Speaker(
                api_key, base_url=base_url, voice=args.voice, model=args.model, language=args.language,
                speed=args.speed, sample_rate=args.sample_rate,
                output=WavOutput(args.out) if args.out else DeviceOutput(args.device),
                on_word=session.on_word if args.captions else None, on_start=session.on_start, on_end=session.on_end,
            ))
        if not session.run(speaker):
            raise ConfigurationError("nothing to say: stdin had no text")
    if args.out:
        print(f"wrote {args.out}", file=sys.stderr)
    return EXIT_OK


_EXIT_FOR = [
    (AuthenticationError, EXIT_AUTH),
    (AudioDeviceError, EXIT_DEVICE),
    (SmallestConnectionError, EXIT_NETWORK),
    (SynthesisTimeout, EXIT_NETWORK),
    (APIError, EXIT_API),
    (ProtocolError, EXIT_API),
    (ConfigurationError, EXIT_USAGE),
    (SmallestError, EXIT_ERROR),
]


def _message(exc: BaseException) -> str:
    """One line, whatever the error's text holds, with a hint where one helps."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, AudioDeviceError):
        text += " (smallest-say --list-devices shows the devices; -o FILE.wav writes a file instead)"
    elif isinstance(exc, AuthenticationError) and exc.status_code is not None:
        text += f" (check {API_KEY_ENV})"
    return text


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except KeyboardInterrupt:  # the speaker was silenced where it was caught (_Session.run)
        print("", file=sys.stderr)  # past the terminal's "^C"
        return EXIT_CTRL_C
    except BrokenPipeError:  # stdout's reader went away (`--list-voices | head -2`): nothing to say about it
        discard_closed_stream(sys.stdout)
        return EXIT_ERROR
    except Exception as exc:  # every error: one line, the traceback only with -v
        if args.verbose:
            logger.exception("failed")
        code = next((code for kind, code in _EXIT_FOR if isinstance(exc, kind)), EXIT_ERROR)
        prefix = "" if isinstance(exc, (SmallestError, OSError)) else "internal error: "
        print(f"smallest-say: error: {prefix}{_message(exc)}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())

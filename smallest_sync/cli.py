"""``smallest-say``: speak text from the command line.

Exit codes (stable, for scripts):
    0 spoken; 1 other error; 2 usage; 3 no or refused API key; 4 audio device;
    5 network or timeout; 6 the service refused the request; 130 Ctrl-C.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from typing import Iterator, Optional, Sequence, Union

from . import __version__
from .errors import (
    APIError,
    AudioDeviceError,
    AuthenticationError,
    ConfigurationError,
    SmallestConnectionError,
    SmallestError,
    SynthesisTimeout,
)
from .settings import LANGUAGES, MODELS, SAMPLE_RATES
from .speaker import API_KEY_ENV, DEFAULT_BASE_URL, Speaker

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_AUTH, EXIT_DEVICE, EXIT_NETWORK, EXIT_API, EXIT_CTRL_C = 0, 1, 2, 3, 4, 5, 6, 130
_EMULATOR_KEY = "sk_emulator"

NO_KEY_HELP = f"""no API key: set {API_KEY_ENV} to your Smallest AI key (it starts with sk_).
Get one at https://waves.smallest.ai (API keys in the dashboard), then:
    export {API_KEY_ENV}=sk_...
Or try it offline against the bundled emulator:  smallest-say --emulator "Hello\""""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smallest-say",
        description="Speak text through Smallest AI's Waves live TTS.",
        epilog=f"The API key comes from ${API_KEY_ENV}. Exit codes: 0 ok, 2 usage, 3 key, "
        "4 audio device, 5 network/timeout, 6 service error, 130 Ctrl-C.",
    )
    parser.add_argument("text", nargs="*", help="what to say")
    parser.add_argument("--voice", help="voice id (default: the model's, e.g. meher)")
    parser.add_argument("--model", choices=MODELS, default="lightning_v3.1_pro")
    parser.add_argument("--language", choices=LANGUAGES, default="en", metavar="CODE")
    parser.add_argument("--speed", type=float, help="0.5 to 2.0")
    parser.add_argument("--sample-rate", type=int, choices=SAMPLE_RATES, default=24000)
    parser.add_argument("--device", help="output device index or name (default: the system's)")
    parser.add_argument("--list-devices", action="store_true", help="list output devices and exit")
    parser.add_argument("-o", "--out", metavar="FILE.wav", help="write a WAV file instead of playing")
    parser.add_argument("--emulator", action="store_true", help="run fully offline against the bundled emulator")
    parser.add_argument("--base-url", default=None, help=f"service URL (default {DEFAULT_BASE_URL})")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details and show tracebacks")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


@contextlib.contextmanager
def _emulator() -> Iterator[str]:
    try:
        from .emulator import Emulator, EmulatorConfig
    except ImportError as exc:
        raise ConfigurationError(f"the emulator needs the 'emulator' extra: pip install 'smallest-sync[emulator]' ({exc})") from exc
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
    from .audio import list_output_devices

    with _native_stderr_silenced(quiet):
        devices = list_output_devices()
    for device in devices:
        mark = "*" if device["is_default"] else " "
        print(f"{mark} {device['index']:3d}  {device['name']}  ({device['host_api']}, {device['default_sample_rate']:.0f} Hz)")
    if not devices:
        print("no output devices", file=sys.stderr)
        return EXIT_DEVICE
    return EXIT_OK


def _device(spec: Optional[str]) -> Union[int, str, None]:
    if spec is None:
        return None
    return int(spec) if spec.isdigit() else spec


def run(args: argparse.Namespace) -> int:
    if args.list_devices:
        return _list_devices(quiet=not args.verbose)
    text = " ".join(args.text).strip()
    if not text:
        print("smallest-say: nothing to say (give text as arguments)", file=sys.stderr)
        return EXIT_USAGE
    api_key = os.environ.get(API_KEY_ENV)
    with contextlib.ExitStack() as stack:
        base_url = args.base_url or DEFAULT_BASE_URL
        if args.emulator:
            base_url = stack.enter_context(_emulator())
            api_key = api_key or _EMULATOR_KEY
        elif not api_key:
            print(f"smallest-say: {NO_KEY_HELP}", file=sys.stderr)
            return EXIT_AUTH
        with _native_stderr_silenced(not args.verbose):
            speaker = Speaker(
                api_key, base_url=base_url, voice=args.voice, model=args.model, language=args.language,
                speed=args.speed, sample_rate=args.sample_rate,
                output=args.out if args.out else _device(args.device),
            )
        stack.enter_context(speaker)
        utterance = speaker.speak(text)
        logging.getLogger(__name__).info(
            "spoke %.2f s of audio; first audio after %.0f ms", utterance.duration,
            1000 * (utterance.time_to_first_audio or 0.0))
    if args.out:
        print(f"wrote {args.out}", file=sys.stderr)
    return EXIT_OK


_EXIT_FOR = [
    (AuthenticationError, EXIT_AUTH),
    (AudioDeviceError, EXIT_DEVICE),
    (SmallestConnectionError, EXIT_NETWORK),
    (SynthesisTimeout, EXIT_NETWORK),
    (APIError, EXIT_API),
    (ConfigurationError, EXIT_USAGE),
    (SmallestError, EXIT_ERROR),
]


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except KeyboardInterrupt:
        print("", file=sys.stderr)
        return EXIT_CTRL_C
    except SmallestError as exc:
        if args.verbose:
            logging.getLogger(__name__).exception("failed")
        print(f"smallest-say: {exc}", file=sys.stderr)
        return next(code for kind, code in _EXIT_FOR if isinstance(exc, kind))


if __name__ == "__main__":
    sys.exit(main())

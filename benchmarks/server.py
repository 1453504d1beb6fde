"""The emulator in its own process, instrumented so the server's own time can be subtracted.

Every figure runs the client against the bundled emulator (``smallest_sync.emulator``)
started in a *separate* process, for three reasons:

* its CPU time is not counted in the client's (figure 4);
* its memory (it keeps every request's PCM in ``emu.served``) is not in the
  client's RSS (figure 5);
* it never competes with the client's threads for the client's GIL: an in-process
  emulator streaming a chunk can hold the GIL for up to ``sys.getswitchinterval()``
  (5 ms) while the client's reader waits to parse the first chunk, which would be
  charged to the client (figure 1).

``time.monotonic()`` is CLOCK_MONOTONIC on Linux: one clock for every process, so
times taken here and in the client process are directly comparable.

The child (``python -m benchmarks.server --config JSON``) prints one line,
``listening ws://HOST:PORT``, then answers commands on stdin, one JSON line each:

* ``dump``: ``{"requests": {request_id: {"text", "received", "first_chunk"}}}``
  (the client's ``request_id`` where it sent one, else the server's: the peers
  send none), then forgets them (and clears ``emu.received``/``emu.served``, which keep PCM).
  ``received`` is ``emu.received[i].time``: when the emulator's handler got the
  request (after websockets parsed the frame); ``first_chunk`` is when the
  ``await ws.send()`` of the request's first ``chunk`` frame returned, i.e. the
  bytes were handed to the kernel. ``first_chunk - received`` is the emulator's
  own time to first chunk (validation, synthesis, framing, base64, send).
* ``config {"field": value, ...}``: set :class:`EmulatorConfig` fields; they apply
  from the next request on.
* ``quit`` (or EOF): stop and exit.

The first-chunk time is recorded by wrapping ``Session._send`` in the child only;
no file of the library is changed. Reading commands happens on the child's main
thread and answers are only produced when asked, so the client process is never
woken by the instrumentation while it is being timed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Peer workers run in another virtualenv; the emulator they talk to must still be
#: this repository's, on the main venv's interpreter (its websockets, its numpy).
EMULATOR_PYTHON_ENV = "SMALLEST_BENCH_EMULATOR_PYTHON"


class EmulatorProcess:
    """Parent side: start the instrumented emulator, query it, stop it.

    Use as a context manager. ``config`` is a dict of :class:`EmulatorConfig`
    fields (``engine`` defaults to ``"tone"``: deterministic, no espeak-ng).
    ``default_complete_backoff_ms`` defaults to 0 rather than the service's 4 s:
    ours sends ``complete_backoff_ms=0`` anyway, but the official SDK sends none
    and waits for ``complete`` at the end of every ``synthesize()``, so with 4 s
    each of its utterances would last 4 s longer (dead time, not in any figure,
    but 1000 utterances would take over an hour).
    """

    def __init__(self, **config: Any) -> None:
        config.setdefault("engine", "tone")
        config.setdefault("default_complete_backoff_ms", 0.0)
        self.config = config
        self._proc: Optional["subprocess.Popen[str]"] = None
        self.base_url = ""
        self._lock = threading.Lock()

    def start(self) -> "EmulatorProcess":
        self._proc = subprocess.Popen(
            [os.environ.get(EMULATOR_PYTHON_ENV, sys.executable), "-m", "benchmarks.server",
             "--config", json.dumps(self.config)],
            cwd=_REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, bufsize=1,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()
        if not line.startswith("listening "):
            self.stop()
            raise RuntimeError(f"benchmark emulator did not start: {line!r}")
        self.base_url = line.split(" ", 1)[1]
        return self

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def _ask(self, command: str) -> Dict[str, Any]:
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        with self._lock:
            proc.stdin.write(command + "\n")
            proc.stdin.flush()
            answer = proc.stdout.readline()
        if not answer:
            raise RuntimeError("benchmark emulator exited")
        result: Dict[str, Any] = json.loads(answer)
        return result

    def dump(self) -> Dict[str, Dict[str, Any]]:
        """Requests served since the last dump, by the client's ``request_id`` (or the server's)."""
        requests: Dict[str, Dict[str, Any]] = self._ask("dump")["requests"]
        return requests

    def by_text(self) -> Dict[str, Dict[str, Any]]:
        """:meth:`dump`, keyed by request text (benchmarks use a unique text per request)."""
        return {r["text"]: r for r in self.dump().values()}

    def configure(self, **fields: Any) -> None:
        self._ask("config " + json.dumps(fields))

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.poll() is None and proc.stdin is not None:
                proc.stdin.write("quit\n")
                proc.stdin.flush()
            proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass

    def __enter__(self) -> "EmulatorProcess":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# ----- child side -------------------------------------------------------------------
def _child(config_json: str) -> int:
    from smallest_sync.emulator import Emulator, EmulatorConfig
    from smallest_sync.emulator import session as session_module

    first_chunk: Dict[str, float] = {}
    original = session_module.Session._send

    async def timed_send(self: Any, frame: Dict[str, Any]) -> None:
        await original(self, frame)
        if frame.get("status") == "chunk":
            key = frame.get("external_request_id") or frame.get("request_id")
            if key is not None and key not in first_chunk:
                first_chunk[key] = time.monotonic()

    session_module.Session._send = timed_send  # type: ignore[method-assign]
    emulator = Emulator(EmulatorConfig(**json.loads(config_json)))
    emulator.start()
    print(f"listening {emulator.base_url}", flush=True)
    try:
        for line in sys.stdin:
            command, _, argument = line.strip().partition(" ")
            if command == "quit":
                break
            if command == "config":
                for name, value in json.loads(argument).items():
                    setattr(emulator.config, name, value)
                print("{}", flush=True)
            elif command == "dump":
                requests: Dict[str, Dict[str, Any]] = {}
                received: Dict[Any, float] = {}
                for record in list(emulator.received):
                    text = (record.message or {}).get("text")
                    if isinstance(text, str) and text.strip():
                        received.setdefault((record.connection_id, text), record.time)
                for served in list(emulator.served):
                    key = served.external_request_id or served.request_id  # as timed_send keys it
                    requests[key] = {"text": served.text, "first_chunk": first_chunk.get(key),
                                     "received": received.get((served.connection_id, served.text))}
                # Ask only between requests: a request still in flight when asked loses
                # its record. Clearing also frees the PCM ``emu.served`` keeps.
                first_chunk.clear()
                emulator.clear()
                print(json.dumps({"requests": requests}), flush=True)
            else:
                print(json.dumps({"error": f"unknown command {command!r}"}), flush=True)
    finally:
        emulator.stop()
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.server")
    parser.add_argument("--config", default="{}", help="EmulatorConfig fields as JSON")
    args = parser.parse_args(argv)
    return _child(args.config)


if __name__ == "__main__":
    sys.exit(main())

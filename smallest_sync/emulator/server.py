"""The :class:`Emulator`: a Waves-compatible server on a background thread.

Threads:

* the caller's thread runs :meth:`Emulator.start`, :meth:`Emulator.stop` and
  every read of the records; it blocks only in ``start`` (until the server
  listens), ``stop`` (until the thread is joined), ``drop_all`` and ``wait_for``;
* the ``smallest-emulator`` daemon thread runs an asyncio event loop with the
  websockets server, the HTTP routing in :meth:`Emulator._route` and every
  :class:`~smallest_sync.emulator.session.Session`. It is a daemon so a test
  that forgets ``stop()`` cannot hang interpreter exit; ``stop()`` joins it;
* espeak-ng runs as asyncio subprocesses of that loop, so the emulator starts
  no other thread of its own.
"""

from __future__ import annotations

import asyncio
import email.utils
import hmac
import http
import json
import logging
import re
import threading
from types import TracebackType
from typing import Any, Awaitable, Callable, Dict, List, Optional, Set, Tuple, Type, Union
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from .catalog import voices_payload
from .config import MAX_IDLE_TIMEOUT, EmulatorConfig, snapshot
from .records import Handshake, Received, Recorder, ServedRequest
from .session import Session

__all__ = ["Emulator", "LIVE_PATH", "VOICES_PATH"]

logger = logging.getLogger(__name__)

LIVE_PATH = "/waves/v1/tts/live"
VOICES_PATH = "/waves/v1/lightning-v3.1/get_voices"
_VOICES_RE = re.compile(r"/waves/v1/lightning[-_]v3\.1(?:[-_]pro)?/get_voices\Z")
_UNAUTHORIZED = {"error": "Unauthorized", "message": "Bearer token is missing or invalid."}
_THREAD_NAME = "smallest-emulator"
_CLOSE_TIMEOUT = 1.0  # seconds a closing handshake may take before TCP is dropped
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0
_POLITE_STOP = 2.0  # seconds stop() lets connections close with a handshake before dropping them


class _RedactAuthorization(logging.Filter):
    """websockets logs request headers at DEBUG; keep the API key out of them."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 2 and str(args[0]).lower() == "authorization":
            record.args = (args[0], "<redacted>")
        return True


#: The logger handed to websockets (its own ``websockets.server`` would log the key).
_ws_logger = logging.getLogger(__name__ + ".websockets")
_ws_logger.addFilter(_RedactAuthorization())


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


async def _accept_after(delay: float) -> None:
    """``process_request`` result: accept the handshake, ``delay`` seconds late."""
    await asyncio.sleep(delay)


def _json_response(status: int, body: Any) -> Response:
    data = json.dumps(body, separators=(",", ":")).encode()
    phrase = _phrase(status)
    headers = Headers([
        ("Date", email.utils.formatdate(usegmt=True)),
        ("Connection", "close"),
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(data))),
    ])  # fmt: skip
    return Response(status, phrase, headers, data)


class Emulator:
    """A local emulator of Smallest AI's Waves live TTS service.

    Use as a context manager (or :meth:`start` / :meth:`stop`)::

        with Emulator(EmulatorConfig(realtime_factor=0)) as emu:
            client = Speaker(api_key="sk_test", base_url=emu.base_url)

    Args:
        config: the switches; kept by reference as :attr:`config`, so changes
            apply from the next request or handshake on.
        host: interface to listen on.
        port: TCP port; ``0`` picks a free one (see :attr:`port`).
        api_key: when set, the only Bearer token accepted; otherwise any
            non-empty token is. Never logged.
    """

    def __init__(self, config: Optional[EmulatorConfig] = None, *, host: str = "127.0.0.1",
                 port: int = 0, api_key: Optional[str] = None) -> None:
        self.config = config if config is not None else EmulatorConfig()
        self.host = host
        self._requested_port = port
        self._api_key = api_key
        self._recorder = Recorder()
        self._thread: Optional[threading.Thread] = None
        self._ready = threading.Event()
        self._startup_error: Optional[BaseException] = None
        self._port: Optional[int] = None
        # The attributes below belong to the event-loop thread.
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stopping: Optional[asyncio.Event] = None
        self._sessions: Set[Session] = set()
        self._pending: Dict[ServerConnection, Tuple[int, str, Dict[str, str]]] = {}

    # -- lifecycle (caller's thread) -----------------------------------------

    def start(self) -> "Emulator":
        """Start the server thread; returns once it is listening.

        Raises:
            RuntimeError: if already started.
            OSError: if the port cannot be bound.
        """
        if self._thread is not None:
            raise RuntimeError("this Emulator was already started")
        self._thread = threading.Thread(target=self._thread_main, name=_THREAD_NAME, daemon=True)
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT):
            raise RuntimeError("the emulator did not start in time")
        if self._startup_error is not None:
            self._thread.join(_STOP_TIMEOUT)
            raise self._startup_error
        logger.info("emulator listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        """Close every connection (code 1001), stop the server, join its thread. Idempotent."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        if thread is threading.current_thread():
            raise RuntimeError("Emulator.stop() cannot be called from the emulator's own thread")
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            try:
                loop.call_soon_threadsafe(stopping.set)
            except RuntimeError:  # the loop already closed on its own
                logger.debug("emulator loop already closed")
        thread.join(_STOP_TIMEOUT)
        if thread.is_alive():
            logger.error("emulator thread did not stop within %.0f s", _STOP_TIMEOUT)

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "listening" if self._port is not None and self._thread and self._thread.is_alive() else "stopped"
        return f"<Emulator {state} host={self.host!r} port={self._port}>"

    # -- addresses -----------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the emulator is not started")
        return self._port

    @property
    def _netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``ws://host:port``: what a client takes as its base URL."""
        return f"ws://{self._netloc}"

    @property
    def live_url(self) -> str:
        return self.base_url + LIVE_PATH

    @property
    def http_url(self) -> str:
        return f"http://{self._netloc}"

    # -- records (any thread) ------------------------------------------------

    @property
    def handshakes(self) -> List[Handshake]:
        with self._recorder.condition:
            return list(self._recorder.handshakes)

    @property
    def received(self) -> List[Received]:
        with self._recorder.condition:
            return list(self._recorder.received)

    @property
    def served(self) -> List[ServedRequest]:
        with self._recorder.condition:
            return list(self._recorder.served)

    @property
    def connections_opened(self) -> int:
        with self._recorder.condition:
            return self._recorder.connections_opened

    @property
    def connections_active(self) -> int:
        with self._recorder.condition:
            return self._recorder.connections_active

    def wait_for(self, predicate: Callable[["Emulator"], bool], timeout: float) -> bool:
        """Block until ``predicate(self)`` is true or ``timeout`` seconds pass.

        Re-evaluated on every recorded change (handshake, message, chunk sent,
        complete, connection closed). Returns the predicate's last value.
        """
        with self._recorder.condition:
            return self._recorder.condition.wait_for(lambda: predicate(self), timeout)

    def clear(self) -> None:
        """Forget the handshakes, received messages and served requests so far."""
        self._recorder.clear()

    def drop_all(self) -> None:
        """Abort every open client connection at the TCP level (no close frame)."""
        loop = self._loop
        if loop is None or self._thread is None or not self._thread.is_alive():
            return

        async def abort_all() -> None:
            for session in list(self._sessions):
                session.abort()

        asyncio.run_coroutine_threadsafe(abort_all(), loop).result(_STOP_TIMEOUT)

    # -- the event-loop thread -----------------------------------------------

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start(), or logged after it
            if not self._ready.is_set():
                self._startup_error = exc
            else:
                logger.exception("emulator thread crashed")
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server: Server = await serve(
            self._handle, self.host, self._requested_port,
            process_request=self._route, process_response=self._record_handshake,
            ping_interval=None, close_timeout=_CLOSE_TIMEOUT, logger=_ws_logger,
        )  # fmt: skip
        try:
            self._port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stopping.wait()
        finally:
            server.close()  # closing handshakes (1001) with every client
            try:
                await asyncio.wait_for(server.wait_closed(), _POLITE_STOP)
            except asyncio.TimeoutError:
                # A client that neither answers the close nor hangs up: drop it.
                logger.info("dropping %d connection(s) that did not close", len(self._sessions))
                for session in list(self._sessions):
                    session.abort()
                await server.wait_closed()
            logger.info("emulator stopped")

    def _route(self, connection: ServerConnection, request: Request) -> Union[Response, None, Awaitable[None]]:
        """``process_request``: auth, HTTP endpoints and handshake faults (loop thread)."""
        cfg = snapshot(self.config)
        split = urlsplit(request.path)
        path, query = split.path, dict(parse_qsl(split.query))
        cid = self._recorder.new_connection_id()
        self._pending[connection] = (cid, path, query)
        if _VOICES_RE.match(path):
            return self._voices(request, cfg)
        if path != LIVE_PATH:
            return _json_response(404, {"error": "Not Found", "message": f"No route for {path}"})
        with self._recorder.condition:
            rejected = self.config.reject_handshakes > 0
            if rejected:
                self.config.reject_handshakes -= 1
        if rejected:
            return _json_response(cfg.reject_status, {
                "error": _phrase(cfg.reject_status) or "Error",
                "message": "Emulated handshake rejection."})
        if not self._authorized(request, cfg):
            return _json_response(401, _UNAUTHORIZED)
        if cfg.handshake_delay > 0:
            return _accept_after(cfg.handshake_delay)  # websockets awaits it
        return None

    def _voices(self, request: Request, cfg: EmulatorConfig) -> Response:
        if not self._authorized(request, cfg):
            return _json_response(401, _UNAUTHORIZED)
        return _json_response(200, voices_payload())

    def _authorized(self, request: Request, cfg: EmulatorConfig) -> bool:
        if cfg.refuse_auth:
            return False
        scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return False
        if self._api_key is None:
            return True
        return hmac.compare_digest(token.encode(), self._api_key.encode())

    def _record_handshake(self, connection: ServerConnection, request: Request,
                          response: Response) -> None:
        """``process_response``: record the outcome of every HTTP request (loop thread)."""
        cid, path, query = self._pending.get(connection, (0, request.path, {}))
        accepted = response.status_code == http.HTTPStatus.SWITCHING_PROTOCOLS
        if not accepted:
            self._pending.pop(connection, None)
        headers = {name.lower(): value for name, value in request.headers.raw_items()}
        with self._recorder.change():
            self._recorder.handshakes.append(Handshake(cid, path, query, headers, accepted,
                                                       response.status_code))
        logger.debug("HTTP %s -> %d (connection %d)", path, response.status_code, cid)

    def _idle_timeout(self, query: Dict[str, str]) -> float:
        default = self.config.idle_timeout
        raw = query.get("timeout")
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            logger.warning("ignoring invalid timeout query %r", raw)
            return default
        if not value > 0:
            logger.warning("ignoring non-positive timeout query %r", raw)
            return default
        return min(value, MAX_IDLE_TIMEOUT)

    async def _handle(self, ws: ServerConnection) -> None:
        """The websockets handler: one :class:`Session` per accepted connection."""
        cid, _, query = self._pending.pop(ws, (0, "", {}))
        if ws.response is None or ws.response.status_code != http.HTTPStatus.SWITCHING_PROTOCOLS:
            return  # websockets 13.0 ran handlers after a refused handshake too
        session = Session(ws, connection_id=cid, idle_timeout=self._idle_timeout(query),
                          get_config=lambda: self.config, recorder=self._recorder)
        self._sessions.add(session)
        with self._recorder.change():
            self._recorder.connections_opened += 1
            self._recorder.connections_active += 1
        logger.info("connection %d opened (session %s)", cid, session.session_id)
        try:
            await session.run()
        finally:
            self._sessions.discard(session)
            with self._recorder.change():
                self._recorder.connections_active -= 1
            logger.info("connection %d closed", cid)

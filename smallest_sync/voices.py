"""The voice catalogue: ``GET /waves/v1/{model}/get_voices`` over plain HTTPS.

One blocking call on the caller's thread (stdlib :mod:`urllib`, no threads of its
own). The endpoint is per model, spelt with hyphens in the path
(``lightning_v3.1_pro`` → ``/waves/v1/lightning-v3.1-pro/get_voices``), and takes
the same Bearer key as the live socket.
"""
from __future__ import annotations

import json
import logging
import ssl
from typing import Any, Dict, List, NamedTuple, Optional, Tuple
from urllib.parse import urlsplit, urlunsplit

from ._version import __version__
from .net.connection import _body_message, live_url
from .errors import (
    APIError,
    AuthenticationError,
    CertificateError,
    ConfigurationError,
    ProtocolError,
    SmallestConnectionError,
)
from .settings import API_KEY_ENV, DEFAULT_BASE_URL, resolve_api_key, validate_model

logger = logging.getLogger(__name__)

__all__ = ["VoiceInfo", "list_voices", "voices_url"]

_MAX_BODY = 8 * 1024 * 1024  # a catalogue is a few kB; never buffer without bound


class VoiceInfo(NamedTuple):
    """One voice of the catalogue. Tags the service left out are None or empty.

    A NamedTuple: immutable, and cheap to define at import time.
    """

    id: str  #: what ``Speaker(voice=...)`` takes
    name: str
    gender: Optional[str] = None
    accent: Optional[str] = None
    age: Optional[str] = None
    languages: Tuple[str, ...] = ()
    emotions: Tuple[str, ...] = ()
    usecases: Tuple[str, ...] = ()


def voices_url(base_url: str, model: str, *, allow_insecure: bool = False) -> str:
    """The catalogue's HTTP(S) URL for ``model`` on the service at ``base_url`` (ws/wss).

    Plain ``ws://`` is refused for non-loopback hosts unless ``allow_insecure``,
    exactly as for the live socket: the key would travel in clear text.
    """
    validate_model(model)
    live_url(base_url, allow_insecure=allow_insecure)  # the same checks as the socket's
    parts = urlsplit(base_url.rstrip("/"))
    scheme = "https" if parts.scheme == "wss" else "http"
    path = f"{parts.path}/waves/v1/{model.replace('_', '-')}/get_voices"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def list_voices(
    api_key: Optional[str] = None,
    *,
    model: str = "lightning_v3.1_pro",
    base_url: str = DEFAULT_BASE_URL,
    timeout: float = 10.0,
    allow_insecure: bool = False,
) -> List[VoiceInfo]:
    """The voices the service offers for ``model``, in the service's order.

    Blocks the calling thread for one HTTP request; ``timeout`` bounds the
    connect and each read. ``base_url`` is the same ``ws(s)://`` URL a Speaker
    takes (the emulator's ``ws://127.0.0.1:PORT`` works too).

    Raises:
        ConfigurationError: no key, an unknown model or an unsafe URL (nothing sent).
        AuthenticationError: the key was refused (HTTP 401/403).
        SmallestConnectionError: the service could not be reached or timed out
            (CertificateError when its certificate did not verify).
        APIError: any other HTTP error, with the service's message and
            ``code`` = the HTTP status.
        ProtocolError: the answer was not the catalogue's JSON.
    """
    key = resolve_api_key(api_key)
    if not key:
        raise ConfigurationError(f"no API key: pass api_key= or set {API_KEY_ENV}")
    url = voices_url(base_url, model, allow_insecure=allow_insecure)
    # Imported here: urllib.request is slow to import, and only this call needs it.
    import http.client
    import urllib.error
    import urllib.request

    class _NoRedirects(urllib.request.HTTPRedirectHandler):
        # urllib would carry the Authorization header to wherever a redirect points.
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    request = urllib.request.Request(url, headers={
        "Authorization": f"Bearer {key}",
        "Accept": "application/json",
        "X-Source": "smallest_sync",
        "X-Smallest-Sync-Version": __version__,
    })
    opener = urllib.request.build_opener(_NoRedirects())
    logger.debug("fetching the voice catalogue from %s", url)
    try:
        with opener.open(request, timeout=timeout) as response:
            body = response.read(_MAX_BODY + 1)
    except urllib.error.HTTPError as exc:
        status = exc.code
        detail = _body_message(exc.read(4096)).replace(key, "***")
        exc.close()
        if status in (401, 403):
            raise AuthenticationError(f"the service refused the API key (HTTP {status}): {detail}",
                                      status_code=status) from None
        if 300 <= status < 400:
            detail = "redirects are not followed"
        raise APIError(f"the voice catalogue at {url} answered HTTP {status}: {detail}", code=str(status)) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise CertificateError(
                f"the TLS certificate of {url} did not verify ({reason.verify_message}); not sending the key there"
            ) from exc
        raise SmallestConnectionError(f"cannot fetch {url}: {reason}") from exc
    if len(body) > _MAX_BODY:
        raise ProtocolError(f"the voice catalogue at {url} is larger than {_MAX_BODY} bytes")
    return _parse(body, url)


def _parse(body: bytes, url: str) -> List[VoiceInfo]:
    try:
        payload = json.loads(body)
        items = payload["voices"]
        if not isinstance(items, list):
            raise TypeError("'voices' is not a list")
        return [_voice(item) for item in items]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ProtocolError(f"the voice catalogue at {url} is not what was expected: {exc}") from exc


def _voice(item: Dict[str, Any]) -> VoiceInfo:
    tags = item.get("tags") or {}

    def text(name: str) -> Optional[str]:
        value = tags.get(name)
        return str(value) if value not in (None, "") else None

    def texts(name: str) -> Tuple[str, ...]:
        value = tags.get(name) or ()
        return (str(value),) if isinstance(value, str) else tuple(str(v) for v in value)

    voice_id = str(item["voiceId"])
    return VoiceInfo(
        id=voice_id, name=str(item.get("displayName") or voice_id),
        gender=text("gender"), accent=text("accent"), age=text("age"),
        languages=texts("language"), emotions=texts("emotions"), usecases=texts("usecases"),
    )

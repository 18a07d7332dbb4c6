"""Who may publish and play: a shared publish key, an HTTP hook, an application callback.

Every check that is configured must allow a request; with none, everyone may.

- ``publish_key``: publishers prove they know it as ``?key=KEY`` after the app or
  the name, or as a suffix of the name, ``NAME_KEY`` (for encoders that cannot send
  a query: OBS's stream key field takes ``test_KEY``). The suffix is taken off, so
  the stream is ``APP/NAME`` either way. Plays need no key.
- ``url``: before each publish and play lpms POSTs JSON ``{"action", "app", "name",
  "query", "client_ip", "protocol"}``; a 2xx answer allows, anything else (another
  status, no answer within ``timeout``, no connection) refuses.
- a callback (`LPMS.handle_auth`) gets the same `AuthRequest` and returns true to
  allow, or false, None or raises to refuse; it too must answer within ``timeout``.

HLS players fetch a playlist every few seconds and a segment each time, with no
query on segment URLs (they are relative URIs). So once a client IP is allowed a
stream over HLS, its further HLS requests for that stream are allowed without
asking again for ``hls_grant_seconds``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from lpms.auth_settings import AuthSettings
from lpms.callbacks import MaybeAwaitable, call

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger("lpms.auth")

PUBLISH, PLAY = "publish", "play"
RTMP, HLS = "rtmp", "hls"
KEY_PARAMETER = "key"
KEY_SEPARATOR = "_"


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """What the hook and the callback are asked about (the hook's JSON body)."""

    action: str  # "publish" or "play"
    app: str
    name: str
    query: dict[str, str] = field(default_factory=dict)
    client_ip: str = ""
    protocol: str = RTMP  # "rtmp", "rtmps" (RTMP over TLS) or "hls"

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


AuthCallback = Callable[[AuthRequest], MaybeAwaitable[Any]]


class Refused(Exception):
    """A request was not authorized; ``reason`` is for the log, ``label`` for metrics."""

    def __init__(self, label: str, reason: str) -> None:
        super().__init__(reason)
        self.label = label
        self.reason = reason


def strip_publish_key(name: str, query: dict[str, str], key: str) -> str | None:
    """The stream name without its key suffix when the publisher gave ``key`` (as a
    query parameter or the suffix), else None. Compared in constant time."""
    given = query.get(KEY_PARAMETER)
    if given is not None and hmac.compare_digest(given.encode(), key.encode()):
        return name
    suffix = KEY_SEPARATOR + key
    if len(name) > len(suffix) and hmac.compare_digest(
        name[-len(suffix) :].encode(), suffix.encode()
    ):
        return name[: -len(suffix)]
    return None


class Authorizer:
    """Runs the configured checks for one server."""

    def __init__(self, settings: AuthSettings) -> None:
        self.settings = settings
        self.callback: AuthCallback | None = None
        self._session: aiohttp.ClientSession | None = None
        self._grants: OrderedDict[tuple[str, str], float] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.settings.url is not None or self.callback is not None

    def check_publish_key(self, name: str, query: dict[str, str]) -> str:
        """The stream name to publish as; `Refused` without the right key."""
        key = self.settings.publish_key
        if key is None:
            return name
        stripped = strip_publish_key(name, query, key)
        if stripped is None:
            raise Refused("publish_key", "wrong or missing publish key")
        return stripped

    async def check(self, request: AuthRequest) -> None:
        """Ask the callback and the hook, where set; `Refused` unless both allow."""
        if not self.enabled or (request.protocol == HLS and self._granted(request)):
            return
        if self.callback is not None:
            await self._ask_callback(self.callback, request)
        if self.settings.url is not None:
            await self._ask_hook(self.settings.url, request)
        if request.protocol == HLS:
            self._grant(request)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- the checks --------------------------------------------------------------

    async def _ask_callback(self, callback: AuthCallback, request: AuthRequest) -> None:
        timeout = self.settings.timeout
        try:
            allowed = await asyncio.wait_for(call(callback, request), timeout)
        except TimeoutError:
            raise Refused(
                "timeout", f"the auth callback did not answer within {timeout:g}s"
            ) from None
        except Exception as exc:
            raise Refused("callback", f"the auth callback failed: {exc!r}") from None
        if not allowed:
            raise Refused("callback", "refused by the auth callback")

    async def _ask_hook(self, url: str, request: AuthRequest) -> None:
        import aiohttp  # here: settings are read by commands that never serve

        timeout = self.settings.timeout
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=timeout), raise_for_status=False
            )
        try:
            async with asyncio.timeout(timeout):
                async with self._session.post(url, json=request.as_json()) as response:
                    status = response.status
                    await response.read()  # bounded by the timeout
        except TimeoutError:
            raise Refused("timeout", f"the auth hook did not answer within {timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise Refused("hook_unreachable", f"the auth hook is unreachable: {exc}") from None
        if not 200 <= status < 300:
            raise Refused("hook", f"refused by the auth hook (HTTP {status})")

    # -- HLS grants ----------------------------------------------------------------

    def _granted(self, request: AuthRequest) -> bool:
        key = (request.client_ip, f"{request.app}/{request.name}")
        until = self._grants.get(key)
        if until is None:
            return False
        if until < time.monotonic():
            del self._grants[key]
            return False
        return True

    def _grant(self, request: AuthRequest) -> None:
        if self.settings.hls_grant_seconds <= 0:
            return
        key = (request.client_ip, f"{request.app}/{request.name}")
        self._grants[key] = time.monotonic() + self.settings.hls_grant_seconds
        self._grants.move_to_end(key)
        while len(self._grants) > self.settings.max_hls_grants:
            self._grants.popitem(last=False)

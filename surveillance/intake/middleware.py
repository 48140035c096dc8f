"""ASGI middleware around the intake app, outermost first:

`TrustedProxy` (scheme, host and client address from a trusted reverse proxy),
`SecurityHeaders` (on every reply, HSTS over HTTPS), `CatchAll` (an unexpected error is a
500 with those headers and a log line without its message), `BodySizeLimit` (413) and
`StrictJson` (NaN and Infinity refused with 422).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import traceback
from collections.abc import Sequence
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

#: No scripts at all, styles only from our own stylesheet, forms post only to us, no framing.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    # Not "no-referrer": under it browsers send `Origin: null` on form posts, and the
    # form's same-origin check needs the real origin.
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


#: Set in `scope["state"]` when the request came through a trusted proxy.
VIA_TRUSTED_PROXY = "via_trusted_proxy"
_HOST = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


class TrustedProxy:
    """Honour X-Forwarded-Proto/-Host/-For, only from the configured proxy networks.

    The proxy must set (overwrite) these headers, so the last value is the one it wrote.
    The client address is the right-most X-Forwarded-For entry that is not itself a
    trusted proxy. Requests from anywhere else are left as they are, headers ignored.
    """

    def __init__(
        self, app: ASGIApp, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
    ) -> None:
        self.app = app
        self.networks = tuple(networks)

    def _trusted(self, text: str | None) -> bool:
        address = _address(text) if text else None
        return address is not None and any(address in n for n in self.networks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] != "http" or not self.networks or not client:
            await self.app(scope, receive, send)
            return
        if not self._trusted(client[0]):
            await self.app(scope, receive, send)
            return
        scope = dict(scope)
        scope["state"] = {**scope.get("state", {}), VIA_TRUSTED_PROXY: True}
        headers: list[tuple[bytes, bytes]] = list(scope["headers"])

        def last(name: bytes) -> str | None:
            values = [v.decode("latin-1") for k, v in headers if k.lower() == name]
            parts = ",".join(values).split(",") if values else []
            return parts[-1].strip() if parts else None

        proto = last(b"x-forwarded-proto")
        if proto is not None and proto.lower() in ("http", "https"):
            scope["scheme"] = proto.lower()
        host = last(b"x-forwarded-host")
        if host is not None and _HOST.match(host):
            headers = [(k, v) for k, v in headers if k.lower() != b"host"]
            headers.append((b"host", host.encode("latin-1")))
            scope["headers"] = headers
        forwarded = [v.decode("latin-1") for k, v in headers if k.lower() == b"x-forwarded-for"]
        for hop in reversed(",".join(forwarded).split(",") if forwarded else []):
            if _address(hop) is None:
                break
            if not self._trusted(hop):
                scope["client"] = (hop.strip(), 0)
                break
        await self.app(scope, receive, send)


class SecurityHeaders:
    """The headers above on every reply, errors included; HSTS when served over HTTPS."""

    def __init__(self, app: ASGIApp, hsts_max_age: int = 365 * 24 * 3600) -> None:
        self.app = app
        self.hsts = f"max-age={hsts_max_age}; includeSubDomains".encode() if hsts_max_age else b""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        wanted = list(SECURITY_HEADERS)
        if self.hsts and scope.get("scheme") == "https":
            wanted.append((b"strict-transport-security", self.hsts))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in wanted if k not in names]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class CatchAll:
    """An unexpected error becomes a 500 inside `SecurityHeaders`, logged without details.

    The exception's message and values may hold report text or a patient id (a validation
    error carries its input), so the log line names only its type and where it was raised.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            frames = traceback.extract_tb(exc.__traceback__)
            where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
            log.error(
                "unexpected %s handling %s %s at %s (message withheld: it may hold report text)",
                type(exc).__name__,
                scope.get("method", "?"),
                scope.get("path", "?"),
                where,
            )
            if started:
                return
            text = (
                "An unexpected error occurred and the report may not have been recorded. "
                "Submit it again with the same submission id: it is recorded once."
            )
            await _reply(scope, send, 500, text)


class BodySizeLimit:
    """Refuse bodies over `max_bytes` with 413, before the app parses anything.

    The body is read here (it is small by construction) so that a missing or lying
    Content-Length cannot get a larger body through.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._too_large(scope, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(scope, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, send: Send) -> None:
        text = (
            f"The request is larger than {self.max_bytes} bytes and was not accepted. "
            "Shorten the narrative and submit again."
        )
        await _reply(scope, send, 413, text, close=True)


class _NotFinite(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NotFinite(name)


class StrictJson:
    """Refuse JSON bodies holding NaN, Infinity or -Infinity (which JSON does not define).

    Python's parser accepts them, and a NaN then fails far from its cause; here it is a
    422 naming the problem. Bodies that are not JSON at all are left to the app's own
    error. Runs inside `BodySizeLimit`, so the body it reads is bounded.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        content_type = dict(scope.get("headers", [])).get(b"content-type", b"")
        if scope["type"] != "http" or b"json" not in content_type.lower():
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            json.loads(body, parse_constant=_refuse_constant)
        except _NotFinite as exc:
            detail = [
                {
                    "loc": ["body"],
                    "msg": f"{exc} is not a number JSON allows: send a finite number, or "
                    "leave the field out",
                    "type": "json_invalid",
                }
            ]
            await _reply(scope, send, 422, json.dumps({"detail": detail}), as_json=True)
            return
        except ValueError:
            pass  # not JSON at all: the app says so in its own words
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _reply(
    scope: Scope, send: Send, status: int, text: str, *, close: bool = False, as_json: bool = False
) -> None:
    """A plain reply from middleware: JSON `{"detail": ...}` under /api/, else text."""
    body: bytes
    headers: list[Any]
    if as_json:
        body = text.encode()
        headers = [(b"content-type", b"application/json")]
    elif str(scope.get("path", "")).startswith("/api/"):
        body = json.dumps({"detail": text}).encode()
        headers = [(b"content-type", b"application/json")]
    else:
        body = text.encode()
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
    headers.append((b"content-length", str(len(body)).encode()))
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

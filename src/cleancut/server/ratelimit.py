"""Rate limits: a token bucket per API key, or per client address when the caller has no key.

Only the API (``/api/``, ``/v1.0/``) is limited; each request there takes one token. A bucket holds
``CLEANCUT_RATE_LIMIT_BURST`` tokens and refills at ``CLEANCUT_RATE_LIMIT_PER_MINUTE`` / 60 per
second. Every limited response carries ``X-RateLimit-Limit`` (the bucket size),
``X-RateLimit-Remaining`` (whole tokens left) and ``X-RateLimit-Reset`` (seconds until the bucket
is full again); an empty bucket answers 429 ``rate_limited`` with ``Retry-After``. The bucket table
is an LRU of at most ``CLEANCUT_RATE_LIMIT_MAX_CLIENTS`` entries; an evicted client starts again
with a full bucket. IPv6 clients are counted per /64, the block one host usually holds.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import RateLimited
from .auth import key_id_of
from .errors import error_response
from .proxies import TrustedProxies

__all__ = ["RateLimitMiddleware", "TokenBuckets", "Decision", "LIMITED_PREFIXES"]

LIMITED_PREFIXES = ("/api/", "/v1.0/")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int  # the bucket size
    remaining: int  # whole tokens left after this request
    reset_s: int  # seconds until the bucket is full again
    retry_after_s: int  # seconds until one token is back (0 when allowed)


class TokenBuckets:
    """Token buckets by identity in a bounded LRU table. Not thread-safe: use it from one event
    loop (``take`` never awaits)."""

    def __init__(self, per_minute: int, burst: int, max_entries: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute <= 0 or burst <= 0 or max_entries <= 0:
            raise ValueError("per_minute, burst and max_entries must be positive")
        self.rate = per_minute / 60.0  # tokens per second
        self.burst = burst
        self.max_entries = max_entries
        self.clock = clock
        self._table: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, updated

    def __len__(self) -> int:
        return len(self._table)

    def take(self, identity: str) -> Decision:
        now = self.clock()
        tokens, updated = self._table.pop(identity, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + max(0.0, now - updated) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._table[identity] = (tokens, now)  # most recently used at the end
        while len(self._table) > self.max_entries:
            self._table.popitem(last=False)
        retry = 0 if allowed else max(1, math.ceil((1.0 - tokens) / self.rate))
        return Decision(
            allowed=allowed,
            limit=self.burst,
            remaining=int(tokens),
            reset_s=math.ceil((self.burst - tokens) / self.rate),
            retry_after_s=retry,
        )


def _identity(scope: Scope, proxies: TrustedProxies) -> str:
    key_id = key_id_of(scope)
    if key_id is not None:
        return f"key:{key_id}"
    addr = proxies.client_of(scope)
    if addr is None:
        return "addr:unknown"
    if addr.version == 6:
        return f"net:{ipaddress.ip_network((addr, 64), strict=False)}"
    return f"addr:{addr}"


class RateLimitMiddleware:
    """Take a token for each API request; answer 429 when the caller's bucket is empty."""

    def __init__(self, app: ASGIApp, per_minute: int, burst: int, max_clients: int,
                 proxies: TrustedProxies) -> None:
        self.app = app
        self.per_minute = per_minute
        self.proxies = proxies
        self.buckets = (TokenBuckets(per_minute, burst or per_minute, max_clients)
                        if per_minute > 0 else None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (self.buckets is None or scope["type"] != "http"
                or not scope.get("path", "").startswith(LIMITED_PREFIXES)):
            await self.app(scope, receive, send)
            return
        identity = _identity(scope, self.proxies)
        decision = self.buckets.take(identity)
        extra = [
            (b"x-ratelimit-limit", str(decision.limit).encode()),
            (b"x-ratelimit-remaining", str(decision.remaining).encode()),
            (b"x-ratelimit-reset", str(decision.reset_s).encode()),
        ]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        if decision.allowed:
            await self.app(scope, receive, send_with_headers)
            return
        who = "this API key" if identity.startswith("key:") else "this client address"
        exc = RateLimited(
            f"rate limit reached for {who}: {self.per_minute} requests per minute, bursts of "
            f"{decision.limit} (CLEANCUT_RATE_LIMIT_PER_MINUTE, CLEANCUT_RATE_LIMIT_BURST); "
            f"retry in {decision.retry_after_s} s",
            retry_after_s=decision.retry_after_s,
        )
        response = await error_response(Request(scope), exc)
        await response(scope, receive, send_with_headers)

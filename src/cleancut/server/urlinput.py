"""Image URLs in requests (``GET /api/remove?url=``, remove.bg's ``image_url`` and
``bg_image_url``): off unless ``CLEANCUT_URL_FETCH_ENABLED``; fetched with :mod:`.fetch` on a
thread, within the request's deadline."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool

from ..errors import InvalidParameter, ProcessingTimeout
from .fetch import FetchPolicy, fetch_image

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["fetch_policy", "fetch_url"]


def fetch_policy(settings: Settings, *, total_timeout_s: float | None = None) -> FetchPolicy:
    total = settings.url_timeout_s if total_timeout_s is None else total_timeout_s
    return FetchPolicy(
        max_bytes=settings.max_upload_bytes,
        connect_timeout_s=min(settings.url_connect_timeout_s, total),
        total_timeout_s=total,
        max_redirects=settings.url_max_redirects,
        allow_hosts=tuple(settings.url_allow_hosts),
    )


def check_enabled(settings: Settings, field: str) -> None:
    if not settings.url_fetch_enabled:
        raise InvalidParameter(
            field, f"{field} is not accepted: URL fetching is off on this service "
            "(CLEANCUT_URL_FETCH_ENABLED); send the image itself")


async def fetch_url(settings: Settings, url: str, field: str, deadline: float) -> bytes:
    """The bytes at ``url`` for the request parameter ``field``, fetched before ``deadline``
    (monotonic) and never later than ``url_timeout_s``. Refusals name ``field``."""
    check_enabled(settings, field)
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise ProcessingTimeout("the request ran past its deadline before fetching "
                                f"{field} (CLEANCUT_REQUEST_TIMEOUT_S)")
    policy = fetch_policy(settings, total_timeout_s=min(settings.url_timeout_s, remaining))
    try:
        return await run_in_threadpool(fetch_image, url, policy)
    except InvalidParameter as exc:
        if exc.field == field:
            raise
        raise InvalidParameter(field, exc.detail) from exc

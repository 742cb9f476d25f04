"""kopf's webhook server, plus the admission request's own uid for the handlers.

kopf hands admission handlers the requester's userInfo but not the AdmissionReview's uid, which
is what ties a stamp to one exact API request (and to the API server's audit log). This server
puts that uid into a context variable for the duration of each request; kopf copies the context
into the handlers it runs, sync or async. It also counts and times every review it answers.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import AsyncIterator
from typing import Any

import kopf

from .. import metrics

ADMISSION_UID: contextvars.ContextVar[str] = contextvars.ContextVar("admission_uid", default="")


def _count(request: Any, webhook: object, response: Any, started: float) -> None:
    """Count one review by webhook, resource, operation and result, and time it. The label
    values are bounded: handler ids, the resources and operations our webhooks register for."""
    review = (request.get("request") or {}) if isinstance(request, dict) else {}
    if response is None:
        result = "error"
    else:
        allowed = ((response or {}).get("response") or {}).get("allowed")
        result = "allowed" if allowed else "denied"
    metrics.ADMISSIONS.labels(
        str(webhook or ""),
        str((review.get("resource") or {}).get("resource") or ""),
        str(review.get("operation") or ""),
        result,
    ).inc()
    metrics.ADMISSION_SECONDS.observe(time.monotonic() - started)


class WebhookServer(kopf.WebhookServer):
    async def __call__(self, fn: Any) -> AsyncIterator[Any]:
        async def with_uid(request: Any, *args: Any, **kwargs: Any) -> Any:
            token = ADMISSION_UID.set(str((request.get("request") or {}).get("uid") or ""))
            started, response = time.monotonic(), None
            try:
                response = await fn(request, *args, **kwargs)
                return response
            finally:
                ADMISSION_UID.reset(token)
                _count(request, kwargs.get("webhook"), response, started)

        async for client_config in super().__call__(with_uid):
            yield client_config

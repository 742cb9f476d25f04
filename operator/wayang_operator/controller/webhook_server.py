"""kopf's webhook server, plus the admission request's own uid for the handlers.

kopf hands admission handlers the requester's userInfo but not the AdmissionReview's uid, which
is what ties a stamp to one exact API request (and to the API server's audit log). This server
puts that uid into a context variable for the duration of each request; kopf copies the context
into the handlers it runs, sync or async.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator
from typing import Any

import kopf

ADMISSION_UID: contextvars.ContextVar[str] = contextvars.ContextVar("admission_uid", default="")


class WebhookServer(kopf.WebhookServer):
    async def __call__(self, fn: Any) -> AsyncIterator[Any]:
        async def with_uid(request: Any, *args: Any, **kwargs: Any) -> Any:
            token = ADMISSION_UID.set(str((request.get("request") or {}).get("uid") or ""))
            try:
                return await fn(request, *args, **kwargs)
            finally:
                ADMISSION_UID.reset(token)

        async for client_config in super().__call__(with_uid):
            yield client_config

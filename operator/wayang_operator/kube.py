"""The one place that talks to the Kubernetes API outside kopf's own watches.

The `kubernetes` client is synchronous, so every call runs in a worker thread and never blocks the
operator's event loop. Calls are idempotent (merge patches of status, create-or-ignore), and the
API's 404 and 409 become domain results instead of exceptions: a plugin deleted while it was being
evaluated is simply gone, not an error.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from .api.meta import GROUP, VERSION

NOT_FOUND = 404
CONFLICT = 409
TRANSIENT = frozenset({429, 500, 502, 503, 504})
ATTEMPTS = 5
BASE_DELAY = 0.2
MAX_DELAY = 5.0


@dataclass(frozen=True)
class Gone:
    """The object no longer exists."""

    namespace: str
    name: str


def load_configuration() -> None:
    """In-cluster credentials when running in a pod, else the kubeconfig ($KUBECONFIG)."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]


async def _with_retries(call: Callable[[], None]) -> None:
    """Run a blocking API call in a thread, retrying transient failures with backoff and jitter."""
    for attempt in range(ATTEMPTS):
        try:
            await asyncio.to_thread(call)
            return
        except ApiException as error:
            if error.status not in TRANSIENT or attempt == ATTEMPTS - 1:
                raise
        except OSError:
            if attempt == ATTEMPTS - 1:
                raise
        delay = min(MAX_DELAY, BASE_DELAY * 2**attempt)
        await asyncio.sleep(random.uniform(delay / 2, delay))  # noqa: S311 - jitter, not crypto


class KubeApi:
    def __init__(self) -> None:
        self._custom = client.CustomObjectsApi()

    async def patch_status(
        self, plural: str, namespace: str, name: str, status: dict[str, Any]
    ) -> Gone | None:
        """Merge-patch the status subresource; `Gone` if the object was deleted meanwhile."""

        def call() -> None:
            self._custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, plural, name, {"status": status}
            )

        try:
            await _with_retries(call)
        except ApiException as error:
            if error.status == NOT_FOUND:
                return Gone(namespace, name)
            raise
        return None

"""The one place that talks to the Kubernetes API outside kopf's own watches.

The `kubernetes` client is synchronous, so every call runs in a worker thread and never blocks the
operator's event loop. Calls are idempotent (merge patches of status, create-or-ignore), and the
API's 404 and 409 become domain results instead of exceptions: a plugin deleted while it was being
evaluated is simply gone, not an error.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from .api.meta import GROUP, VERSION
from .core.leases import LeaseRecord

NOT_FOUND = 404
CONFLICT = 409
INVALID = 422
TRANSIENT = frozenset({429, 500, 502, 503, 504})
ATTEMPTS = 5
BASE_DELAY = 0.2
MAX_DELAY = 5.0

T = TypeVar("T")


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


async def _with_retries(call: Callable[[], T]) -> T:
    """Run a blocking API call in a thread, retrying transient failures with backoff and jitter."""
    for attempt in range(ATTEMPTS):
        try:
            return await asyncio.to_thread(call)
        except ApiException as error:
            if error.status not in TRANSIENT or attempt == ATTEMPTS - 1:
                raise
        except OSError:
            if attempt == ATTEMPTS - 1:
                raise
        delay = min(MAX_DELAY, BASE_DELAY * 2**attempt)
        await asyncio.sleep(random.uniform(delay / 2, delay))  # noqa: S311 - jitter, not crypto
    raise AssertionError("unreachable: the last attempt returns or raises")


async def _unless(status: int, call: Callable[[], T]) -> T | None:
    """The call's result, or None when the API answers `status`: 404 (gone) and 409 (exists
    already, or changed since it was read) are outcomes here, not errors."""
    try:
        return await _with_retries(call)
    except ApiException as error:
        if error.status == status:
            return None
        raise


FIELD_MANAGER = "wayang-operator"
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"


class KubeApi:
    def __init__(self) -> None:
        self._custom = client.CustomObjectsApi()
        self._core = client.CoreV1Api()
        self._leases = client.CoordinationV1Api()
        self._apps = client.AppsV1Api()
        self._networking = client.NetworkingV1Api()

    async def apply(self, body: dict[str, Any]) -> None:
        """Server-side apply of one object of a plugin's workload, as the operator's field
        manager (forced: the operator owns what it renders; a hand edit is put back)."""
        kind = body["kind"]
        patch = {
            "ServiceAccount": self._core.patch_namespaced_service_account,
            "ConfigMap": self._core.patch_namespaced_config_map,
            "Service": self._core.patch_namespaced_service,
            "Deployment": self._apps.patch_namespaced_deployment,
            "NetworkPolicy": self._networking.patch_namespaced_network_policy,
        }[kind]
        meta = body["metadata"]

        def call() -> None:
            patch(
                meta["name"],
                meta["namespace"],
                body,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type=APPLY,
            )

        await _with_retries(call)

    async def scale_deployment(self, namespace: str, name: str, replicas: int) -> Gone | None:
        """Set a Deployment's replicas (unload: 0); `Gone` if there is no such Deployment."""

        def call() -> bool:
            self._apps.patch_namespaced_deployment(
                name,
                namespace,
                {"spec": {"replicas": replicas}},
                field_manager=FIELD_MANAGER,
                _content_type=MERGE,
            )
            return True

        return None if await _unless(NOT_FOUND, call) else Gone(namespace, name)

    async def set_finalizers(
        self, plural: str, namespace: str, name: str, finalizers: list[str], resource_version: str
    ) -> bool:
        """Replace an object's finalizers if it is still at `resource_version`; False when it
        changed meanwhile or is gone (its next event brings the current version)."""
        patch: list[dict[str, Any]] = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version},
            {"op": "replace", "path": "/metadata/finalizers", "value": finalizers},
        ]

        def call() -> bool:
            self._custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name, patch,
                _content_type="application/json-patch+json",
            )  # fmt: skip
            return True

        try:
            return await _unless(NOT_FOUND, call) is not None
        except ApiException as error:
            if error.status in (CONFLICT, INVALID):  # the test operation failed
                return False
            raise

    async def read_lease(self, namespace: str, name: str) -> tuple[LeaseRecord, str] | None:
        """The Lease's holder and renewal, with its resourceVersion; None if there is none."""

        def call() -> tuple[LeaseRecord, str]:
            lease = self._leases.read_namespaced_lease(name, namespace)
            spec, meta = lease.spec, lease.metadata
            renewed = spec.renew_time if spec else None
            record = LeaseRecord(
                holder=spec.holder_identity if spec else None,
                renewed=renewed.isoformat() if renewed else None,
            )
            return record, str(meta.resource_version if meta else "")

        return await _unless(NOT_FOUND, call)

    async def write_lease(
        self,
        namespace: str,
        name: str,
        holder: str | None,
        duration: int,
        resource_version: str | None,
    ) -> bool:
        """Create the Lease (no resourceVersion) or replace it only if it is still at
        `resource_version`; False when another replica got there first (409)."""
        body = client.V1Lease(
            api_version="coordination.k8s.io/v1",
            kind="Lease",
            metadata=client.V1ObjectMeta(
                name=name, namespace=namespace, resource_version=resource_version
            ),
            spec=client.V1LeaseSpec(
                holder_identity=holder,
                lease_duration_seconds=duration,
                renew_time=datetime.datetime.now(datetime.UTC),
            ),
        )

        def call() -> bool:
            if resource_version is None:
                self._leases.create_namespaced_lease(namespace, body)
            else:
                self._leases.replace_namespaced_lease(name, namespace, body)
            return True

        return await _unless(CONFLICT, call) is not None

    async def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One of our objects as the API server holds it now; None if there is none."""

        def call() -> dict[str, Any]:
            found = self._custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name
            )
            return cast(dict[str, Any], found)

        return await _unless(NOT_FOUND, call)

    async def create(self, plural: str, namespace: str, body: dict[str, Any]) -> bool:
        """Create one of our objects; False if it exists already (creation is idempotent)."""

        def call() -> bool:
            self._custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)
            return True

        return await _unless(CONFLICT, call) is not None

    async def secret_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        """A Secret's decoded data; None if there is no such Secret."""

        def call() -> dict[str, bytes]:
            data = self._core.read_namespaced_secret(name, namespace).data or {}
            return {key: base64.b64decode(value) for key, value in data.items()}

        return await _unless(NOT_FOUND, call)

    async def read_config_map(self, namespace: str, name: str) -> tuple[dict[str, str], str] | None:
        """A ConfigMap's data and resourceVersion; None if there is none."""

        def call() -> tuple[dict[str, str], str]:
            found = self._core.read_namespaced_config_map(name, namespace)
            version = found.metadata.resource_version if found.metadata else ""
            return dict(found.data or {}), str(version or "")

        return await _unless(NOT_FOUND, call)

    async def write_config_map(
        self,
        namespace: str,
        name: str,
        data: dict[str, str],
        *,
        labels: dict[str, str],
        resource_version: str | None = None,
        immutable: bool = False,
    ) -> str | None:
        """Create the ConfigMap (no resourceVersion) or replace it only if it is still at
        `resource_version` (compare-and-swap): its new resourceVersion, or None when it exists
        already / changed meanwhile."""
        body = client.V1ConfigMap(
            metadata=client.V1ObjectMeta(
                name=name, namespace=namespace, labels=labels, resource_version=resource_version
            ),
            data=data,
            immutable=immutable or None,
        )

        def call() -> str:
            if resource_version is None:
                written = self._core.create_namespaced_config_map(namespace, body)
            else:
                written = self._core.replace_namespaced_config_map(name, namespace, body)
            return str(written.metadata.resource_version if written.metadata else "")

        return await _unless(CONFLICT, call)

    async def delete_config_map(self, namespace: str, name: str) -> None:
        def call() -> None:
            self._core.delete_namespaced_config_map(name, namespace)

        await _unless(NOT_FOUND, call)

    async def create_secret(self, namespace: str, name: str, data: dict[str, bytes]) -> bool:
        """Create a Secret; False if it exists already."""
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(name=name, namespace=namespace),
            data={key: base64.b64encode(value).decode() for key, value in data.items()},
        )

        def call() -> bool:
            self._core.create_namespaced_secret(namespace, body)
            return True

        return await _unless(CONFLICT, call) is not None

    async def namespace_uid(self, name: str) -> str:
        def call() -> str:
            meta = self._core.read_namespace(name).metadata
            return str(meta.uid if meta else "")

        return await _with_retries(call)

    async def list_cluster(self, plural: str) -> list[dict[str, Any]]:
        """Every object of a cluster-scoped kind of ours (policies: few by nature)."""

        def call() -> list[dict[str, Any]]:
            found = cast(
                dict[str, Any], self._custom.list_cluster_custom_object(GROUP, VERSION, plural)
            )
            return list(found.get("items") or [])

        return await _with_retries(call)

    async def namespace_labels(self, name: str) -> dict[str, str]:
        def call() -> dict[str, str]:
            meta = self._core.read_namespace(name).metadata
            return dict((meta.labels if meta else None) or {})

        return await _with_retries(call)

    async def patch_status(
        self, plural: str, namespace: str, name: str, status: dict[str, Any]
    ) -> Gone | None:
        """Merge-patch the status subresource; `Gone` if the object was deleted meanwhile."""

        def call() -> bool:
            self._custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, plural, name, {"status": status}
            )
            return True

        return None if await _unless(NOT_FOUND, call) else Gone(namespace, name)

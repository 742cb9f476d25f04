"""The one place that talks to the Kubernetes API outside kopf's own watches.

The `kubernetes` client is synchronous, so every call runs in a worker thread and never blocks the
operator's event loop. Calls are idempotent (merge patches of status, create-or-ignore), and the
API's 404 and 409 become domain results instead of exceptions: a plugin deleted while it was being
evaluated is simply gone, not an error.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import urllib3
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
EVENT_MESSAGE_MAX = 1024
"""What kopf cuts an Event's message to."""

T = TypeVar("T")


@dataclass(frozen=True)
class Gone:
    """The object no longer exists."""

    namespace: str
    name: str


@dataclass(frozen=True)
class Conflict:
    """The object changed since the version a write was based on (409): the write was refused,
    and the object's next watch event brings what changed. This is how a replica that lost its
    Lease while a write was under way is fenced off: the new leader has written since."""

    namespace: str
    name: str


@dataclass(frozen=True)
class Written:
    """The write landed; the object's resourceVersion after it."""

    resource_version: str


def load_configuration() -> None:
    """In-cluster credentials when running in a pod, else the kubeconfig ($KUBECONFIG)."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]


IN_CLUSTER_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def load_client_configuration(kubeconfig: str | None = None, context: str | None = None) -> str:
    """Credentials the way kubectl finds them, for a command a person runs: `--kubeconfig`, else
    $KUBECONFIG (a `:`-separated list is merged), else ~/.kube/config; `--context` picks the
    context, else the current one. Only without any kubeconfig and flags, inside a pod, the
    pod's service account. Returns the namespace a command uses when none is given (the
    context's, else "default"). Raises `ClusterError` when nothing is configured."""
    path = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    explicit = bool(kubeconfig or context or os.environ.get("KUBECONFIG"))
    if not explicit and not os.path.exists(path) and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        try:
            with open(IN_CLUSTER_NAMESPACE) as file:
                return file.read().strip() or "default"
        except OSError:
            return "default"
    try:
        config.load_kube_config(config_file=path, context=context)  # type: ignore[no-untyped-call]
        contexts, current = config.list_kube_config_contexts(config_file=path)  # type: ignore[no-untyped-call]
    except (config.ConfigException, OSError, ValueError) as error:
        raise ClusterError(f"no usable kubeconfig ({path}): {error}", None) from error
    chosen = next((c for c in contexts or [] if c.get("name") == context), None) or current
    namespace = ((chosen or {}).get("context") or {}).get("namespace")
    return str(namespace or "default")


class ClusterError(Exception):
    """A request the cluster refused (`status`: 403, 404, ...) or that reached no cluster
    (`status` None), with the API server's own words: what a command shows a person."""

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def cluster_error(error: BaseException) -> ClusterError | None:
    """The client's exception as a `ClusterError` (the message the API server sent, e.g. which
    verb on which resource RBAC refused), or None for anything else (a bug, not the cluster)."""
    if isinstance(error, ClusterError):
        return error
    if isinstance(error, ApiException):
        message = str(error.reason or "")
        with contextlib.suppress(ValueError, AttributeError):  # not a Status document
            message = str(json.loads(error.body or "{}").get("message") or message)
        return ClusterError(message, int(error.status or 0))
    if isinstance(error, urllib3.exceptions.HTTPError | OSError):
        cause = getattr(error, "reason", None) or error
        host = client.Configuration.get_default_copy().host
        return ClusterError(f"no cluster reachable at {host}: {cause}", None)
    return None


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


REFUSALS = frozenset({400, 403, 404, 409, 422})
"""Answers that say the request itself is refused: sending it again changes nothing."""
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
        manager (forced: the operator owns what it renders; a hand edit is put back). A refusal
        (invalid, forbidden by RBAC, an admission policy or a quota) is a `ClusterError` with
        the API server's words; transient failures are retried."""
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

        try:
            await _with_retries(call)
        except ApiException as error:
            if error.status in REFUSALS:
                refused = cluster_error(error)
                assert refused is not None
                raise refused from error
            raise

    async def patch_spec(
        self, plural: str, namespace: str, name: str, spec: dict[str, Any]
    ) -> None:
        """Merge-patch the spec of one of our objects (a ScanReport the operator takes over)."""

        def call() -> None:
            self._custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name, {"spec": spec}
            )

        await _with_retries(call)

    async def whoami(self) -> str:
        """The user name the API server authenticates these credentials as."""

        def call() -> str:
            review = client.AuthenticationV1Api().create_self_subject_review(
                client.V1SelfSubjectReview(
                    api_version="authentication.k8s.io/v1", kind="SelfSubjectReview"
                )
            )
            user = review.status.user_info if review.status else None
            return str(user.username or "") if user else ""

        return await _with_retries(call)

    async def annotate(
        self, plural: str, namespace: str, name: str, annotations: dict[str, str]
    ) -> None:
        """Merge-patch annotations onto one of our objects."""

        def call() -> None:
            self._custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                {"metadata": {"annotations": annotations}},
            )

        await _with_retries(call)

    async def post_event(self, ref: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """An Event on `ref` (apiVersion, kind, name, namespace, uid), shaped as kopf's own, for
        decisions made outside kopf's per-object tasks, where kopf has no queue to post to (the
        workload observation loop, a takeover's re-evaluation). Best effort, as Events are:
        an API error is retried when transient, then dropped."""
        now = datetime.datetime.now(datetime.UTC).isoformat()
        body: dict[str, Any] = {
            "metadata": {"namespace": ref["namespace"], "generateName": "wayang-event-"},
            "action": "Reconcile",
            "type": type_,
            "reason": reason,
            "message": message
            if len(message) <= EVENT_MESSAGE_MAX
            else (message[: EVENT_MESSAGE_MAX - 1] + "…"),
            "reportingComponent": FIELD_MANAGER,
            "reportingInstance": os.environ.get("HOSTNAME", FIELD_MANAGER),
            "source": {"component": FIELD_MANAGER},
            "involvedObject": ref,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "eventTime": now,
        }

        def call() -> None:
            self._core.create_namespaced_event(ref["namespace"], body)  # type: ignore[arg-type]

        with contextlib.suppress(ApiException):
            await _with_retries(call)

    async def pod_event_messages(self, namespace: str, pod: str, reason: str) -> list[str]:
        """The messages of a pod's events with this reason (the kubelet's FailedMount says
        which Secret is missing; nothing in the pod's status does)."""

        def call() -> list[str]:
            events = self._core.list_namespaced_event(
                namespace,
                field_selector=f"involvedObject.kind=Pod,involvedObject.name={pod},reason={reason}",
            )
            return [str(event.message or "") for event in events.items]

        return await _with_retries(call)

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
    ) -> str | None:
        """Replace an object's finalizers if it is still at `resource_version`: the object's
        resourceVersion after it, or None when it changed meanwhile or is gone (its next event
        brings the current version)."""
        patch: list[dict[str, Any]] = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version},
            {"op": "replace", "path": "/metadata/finalizers", "value": finalizers},
        ]

        def call() -> str:
            answer = self._custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name, patch,
                _content_type="application/json-patch+json",
            )  # fmt: skip
            metadata: dict[str, Any] = cast("dict[str, Any]", answer).get("metadata") or {}
            return str(metadata.get("resourceVersion", ""))

        try:
            return await _unless(NOT_FOUND, call)
        except ApiException as error:
            if error.status in (CONFLICT, INVALID):  # the test operation failed
                return None
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

    async def list_objects(self, plural: str, namespace: str | None) -> list[dict[str, Any]]:
        """Every object of a kind of ours in `namespace`, or (None) in all namespaces or, for a
        cluster-scoped kind (policies), the cluster."""

        def call() -> list[dict[str, Any]]:
            if namespace is None:
                found = self._custom.list_cluster_custom_object(GROUP, VERSION, plural)
            else:
                found = self._custom.list_namespaced_custom_object(
                    GROUP, VERSION, namespace, plural
                )
            return list(cast(dict[str, Any], found).get("items") or [])

        return await _with_retries(call)

    async def create_new(self, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create one of our objects (e.g. named by `metadata.generateName`) and return it as
        the API server stored it; unlike `create`, a refusal is raised, not swallowed."""

        def call() -> dict[str, Any]:
            created = self._custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, body
            )
            return cast(dict[str, Any], created)

        return await _with_retries(call)

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

    async def namespace_labels(self, name: str) -> dict[str, str]:
        def call() -> dict[str, str]:
            meta = self._core.read_namespace(name).metadata
            return dict((meta.labels if meta else None) or {})

        return await _with_retries(call)

    async def patch_status(
        self,
        plural: str,
        namespace: str,
        name: str,
        status: dict[str, Any],
        *,
        resource_version: str | None = None,
    ) -> Written | Gone | Conflict:
        """Merge-patch the status subresource, only if the object is still at
        `resource_version` when one is given (a precondition the API server checks);
        `Gone` if the object was deleted meanwhile, `Conflict` if it changed."""
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}

        def call() -> Written | Conflict:
            try:
                answer = self._custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, namespace, plural, name, body
                )
            except ApiException as error:
                if error.status == CONFLICT and resource_version:
                    return Conflict(namespace, name)
                raise
            metadata: dict[str, Any] = cast("dict[str, Any]", answer).get("metadata") or {}
            version = metadata.get("resourceVersion", "")
            return Written(str(version))

        written = await _unless(NOT_FOUND, call)
        return Gone(namespace, name) if written is None else written

    async def set_webhook_ca(self, name: str, ca_pem: bytes) -> list[str]:
        """Put `ca_pem` into every webhook of the Mutating- and ValidatingWebhookConfiguration
        named `name` (the chart's), leaving all else as the chart declared it; the kinds that
        exist are returned. A JSON patch per webhook with a `test` of its name, so a
        configuration changed meanwhile fails instead of being patched at the wrong index."""
        bundle = base64.b64encode(ca_pem).decode()
        admission = client.AdmissionregistrationV1Api()
        kinds: dict[str, tuple[Callable[[str], Any], Callable[..., Any]]] = {
            "MutatingWebhookConfiguration": (
                admission.read_mutating_webhook_configuration,
                admission.patch_mutating_webhook_configuration,
            ),
            "ValidatingWebhookConfiguration": (
                admission.read_validating_webhook_configuration,
                admission.patch_validating_webhook_configuration,
            ),
        }
        patched: list[str] = []
        for kind, (read, patch) in kinds.items():

            def call(read: Callable[[str], Any] = read, patch: Callable[..., Any] = patch) -> bool:
                webhooks = read(name).webhooks or []
                operations: list[dict[str, Any]] = []
                for index, webhook in enumerate(webhooks):
                    if webhook.client_config.ca_bundle == bundle:
                        continue
                    path = f"/webhooks/{index}"
                    operations.append({"op": "test", "path": f"{path}/name", "value": webhook.name})
                    operations.append(
                        {"op": "add", "path": f"{path}/clientConfig/caBundle", "value": bundle}
                    )
                if operations:
                    patch(name, operations, _content_type="application/json-patch+json")
                return True

            if await _unless(NOT_FOUND, call):
                patched.append(kind)
        return patched

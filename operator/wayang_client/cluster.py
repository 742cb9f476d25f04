"""The SDK in a cluster: the plugin index read from its ConfigMap, and calls through the API
server's service proxy. The only module of wayang_client that needs the `kubernetes` client,
which it imports when used, never at import time of the package.

- The engine, in a pod: `index_in_cluster()` reads ConfigMap `wayang-plugin-index` of its own
  namespace with the pod's service account (it needs `get` on that ConfigMap), and the default
  HttpTransport calls each plugin's Service by its cluster DNS name.
- A person or a CI job outside the cluster (`kubectl wayang call`): `connect()` loads
  credentials as kubectl does (--kubeconfig, $KUBECONFIG, ~/.kube/config, --context), `index()`
  reads the index, and `ServiceProxyTransport` POSTs to
  `/api/v1/namespaces/NS/services/wayang-PLUGIN:80/proxy/execute`: it needs the
  `services/proxy` permission (create) in the namespace, and the plugin's NetworkPolicy must
  admit the API server, which plugin policies normally do not (see docs/sdk.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from .discovery import INDEX_NAME, DiscoveryError, PluginEntry, PluginIndex
from .transport import EXECUTE, Reply, TransportError, encode

SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def connect(kubeconfig: str | None = None, context: str | None = None) -> str:
    """Load credentials the way kubectl finds them; returns the namespace to use when none is
    given (the context's). Raises DiscoveryError when no cluster is configured."""
    from wayang_operator.kube import ClusterError, load_client_configuration  # noqa: PLC0415

    try:
        return load_client_configuration(kubeconfig, context)
    except ClusterError as error:
        raise DiscoveryError(error.message) from error


def index(namespace: str) -> PluginIndex:
    """The namespace's plugin index, from ConfigMap wayang-plugin-index (credentials loaded)."""
    from kubernetes import client  # noqa: PLC0415 - the optional cluster side

    from wayang_operator.kube import cluster_error  # noqa: PLC0415

    try:
        found = client.CoreV1Api().read_namespaced_config_map(INDEX_NAME, namespace)
    except Exception as error:
        known = cluster_error(error)
        if known is None:
            raise
        if known.status == 404:
            raise DiscoveryError(
                f"no plugin index in namespace {namespace} (ConfigMap {INDEX_NAME}): no plugin "
                "serves there, or the operator does not watch the namespace"
            ) from error
        raise DiscoveryError(
            f"cannot read ConfigMap {namespace}/{INDEX_NAME}: {known.message}"
        ) from error
    return PluginIndex.from_config_map(found.data, namespace)


def index_in_cluster(namespace: str | None = None) -> PluginIndex:
    """For the engine in a pod: the pod's service account, its own namespace by default."""
    from kubernetes import config  # noqa: PLC0415 - the optional cluster side

    config.load_incluster_config()  # type: ignore[no-untyped-call]
    if namespace is None:
        try:
            with open(SERVICE_ACCOUNT_NAMESPACE) as file:
                namespace = file.read().strip() or "default"
        except OSError:
            namespace = "default"
    return index(namespace)


def proxy_path(entry: PluginEntry) -> str:
    """The API server's path to the plugin's Service's /execute."""
    if not entry.namespace:
        raise TransportError("proxy", f"{entry.id}: no namespace, so no Service to proxy to")
    service, port = entry.service
    return (
        f"/api/v1/namespaces/{quote(entry.namespace, safe='')}/services/"
        f"{quote(service, safe='')}:{port}/proxy{EXECUTE}"
    )


class ServiceProxyTransport:
    """POST /execute through the API server's service proxy, with the loaded credentials (call
    `connect` first). The answer is the plugin host's, or the API server's own Status (no
    endpoints, forbidden...), which the client reports as an error reaching no plugin."""

    def __init__(self) -> None:
        from kubernetes import client  # noqa: PLC0415 - the optional cluster side

        self._configuration = client.Configuration.get_default_copy()
        self._api = client.ApiClient(self._configuration)

    def _auth(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        settings: Mapping[str, Any] = self._configuration.auth_settings()
        for setting in settings.values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[str(setting["key"])] = str(setting["value"])
        return headers

    def post(
        self,
        entry: PluginEntry,
        document: Mapping[str, Any],
        headers: Mapping[str, str],
        timeout: float,
    ) -> Reply:
        import urllib3  # noqa: PLC0415 - comes with the kubernetes client

        url = self._configuration.host + proxy_path(entry)
        sent = {"Content-Type": "application/json", **self._auth(), **headers}
        try:
            response = self._api.rest_client.pool_manager.request(
                "POST",
                url,
                body=encode(document),
                headers=sent,
                timeout=urllib3.Timeout(total=timeout),
                retries=False,
                preload_content=True,
            )
        except urllib3.exceptions.TimeoutError as error:
            raise TransportError(
                "timeout", f"{url} did not answer within {timeout:g} s", timeout=True
            ) from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            cause = getattr(error, "reason", None) or error
            raise TransportError(
                "unreachable", f"no cluster reachable at {self._configuration.host}: {cause}"
            ) from error
        return Reply(int(response.status), bytes(response.data or b""))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._api.close()  # type: ignore[no-untyped-call]

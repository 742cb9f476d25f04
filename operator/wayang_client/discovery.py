"""Where plugins are and how each wants its errors handled: the plugin index.

In a cluster the operator publishes one index per namespace, ConfigMap `wayang-plugin-index`,
key `plugins.json`: a JSON list with one entry per serving plugin (core/workload.py,
`index_entry`). Without a cluster (the blueprint's runtime-lite) the same list comes from a
file, or one PluginDescriptor (JSON or YAML; a whole Plugin resource too) plus the endpoint
where its runtime host listens. Either way the engine gets `PluginEntry`s and finds them by the
Plugin's name or by the plugin id. Reading the ConfigMap needs the Kubernetes client: that is in
cluster.py, imported only by those who use it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from wayang_operator.api.descriptor import (
    CircuitBreaker,
    ErrorHandlingConfig,
    PluginDescriptor,
    ResourceProfile,
    RetryPolicy,
)

INDEX_NAME = "wayang-plugin-index"
INDEX_KEY = "plugins.json"
DEFAULT_TIMEOUT_MS = ResourceProfile().timeout


class _Loader(yaml.SafeLoader):
    """A safe loader that leaves timestamps as strings, as the API server does (`createdAt`)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class DiscoveryError(ValueError):
    """A plugin or an index that cannot be found or read; the message says which and why."""


def effective(handling: ErrorHandlingConfig | None) -> ErrorHandlingConfig:
    """errorHandling with the seed's defaults for the retry policy and the circuit breaker
    (what the index publishes; applied again here for entries made from a descriptor)."""
    handling = handling or ErrorHandlingConfig()
    return handling.model_copy(
        update={
            "retry_policy": handling.retry_policy or RetryPolicy(),
            "circuit_breaker": handling.circuit_breaker or CircuitBreaker(),
        }
    )


@dataclass(frozen=True)
class PluginEntry:
    """One plugin the engine can call."""

    name: str
    """The Plugin's name in its namespace (its Service is `wayang-<name>`)."""
    id: str
    version: str
    digest: str
    endpoint: str
    """Base URL of the runtime host (`POST <endpoint>/execute`)."""
    namespace: str = ""
    """The Plugin's namespace; empty without a cluster."""
    error_handling: ErrorHandlingConfig = field(default_factory=lambda: effective(None))
    success_port: str | None = None
    error_port: str = "error"
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    category: str = "node"
    inputs: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()

    @property
    def retry_policy(self) -> RetryPolicy:
        return self.error_handling.retry_policy or RetryPolicy()

    @property
    def circuit_breaker(self) -> CircuitBreaker:
        return self.error_handling.circuit_breaker or CircuitBreaker()

    @property
    def service(self) -> tuple[str, int]:
        """The Service name and port the endpoint names (`http://wayang-x.ns.svc:80`)."""
        parts = urlsplit(self.endpoint)
        return (parts.hostname or "").split(".", 1)[0], parts.port or 80

    @classmethod
    def from_index(cls, entry: Mapping[str, Any], namespace: str = "") -> PluginEntry:
        """An entry of `plugins.json`. Entries written before the index carried outputs,
        errorHandling and timeout get the defaults."""
        try:
            outputs = entry.get("outputs") or {}
            handling = entry.get("errorHandling")
            return cls(
                name=str(entry.get("plugin") or entry["id"]),
                id=str(entry["id"]),
                version=str(entry["version"]),
                digest=str(entry.get("digest") or ""),
                endpoint=str(entry["endpoint"]).rstrip("/"),
                namespace=namespace,
                error_handling=effective(
                    None
                    if handling is None
                    else ErrorHandlingConfig.model_validate(handling, by_alias=True)
                ),
                success_port=outputs.get("success"),
                error_port=str(outputs.get("error") or "error"),
                timeout_ms=int(entry.get("timeout") or DEFAULT_TIMEOUT_MS),
                category=str(entry.get("category") or "node"),
                inputs=tuple(entry.get("inputs") or ()),
                provides=tuple(entry.get("provides") or ()),
                capabilities=tuple(entry.get("capabilities") or ()),
            )
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            what = entry.get("id") if isinstance(entry, Mapping) else entry
            raise DiscoveryError(f"index entry {what!r} is not usable: {error}") from error

    @classmethod
    def from_descriptor(
        cls,
        descriptor: PluginDescriptor | Mapping[str, Any],
        endpoint: str,
        *,
        name: str | None = None,
        namespace: str = "",
    ) -> PluginEntry:
        """A plugin known by its descriptor (a PluginDescriptor, or a Plugin resource whose
        `spec` is one) and the URL of its runtime host."""
        metadata: Mapping[str, Any] = {}
        if isinstance(descriptor, Mapping):
            if "spec" in descriptor:
                metadata = descriptor.get("metadata") or {}
                descriptor = descriptor["spec"]
            try:
                descriptor = PluginDescriptor.model_validate(descriptor, by_alias=True)
            except ValueError as error:
                raise DiscoveryError(f"not a valid PluginDescriptor: {error}") from error
        spec = descriptor
        return cls(
            name=name or str(metadata.get("name") or spec.id.rsplit("/", 1)[-1]),
            id=spec.id,
            version=spec.version,
            digest=spec.implementation.digest,
            endpoint=endpoint.rstrip("/"),
            namespace=namespace or str(metadata.get("namespace") or ""),
            error_handling=effective(spec.error_handling),
            success_port=spec.outputs.success.name,
            error_port=spec.outputs.error.name,
            timeout_ms=(spec.resource_profile or ResourceProfile()).timeout,
            category=spec.category.value,
            inputs=tuple(port.name for port in spec.inputs),
            provides=tuple(sorted(spec.provides or [])),
            capabilities=tuple(sorted(c.value for c in spec.capabilities or [])),
        )

    @classmethod
    def at(cls, endpoint: str) -> PluginEntry:
        """A runtime host known only by its URL: the seed's default errorHandling applies."""
        host = urlsplit(endpoint).hostname or endpoint
        return cls(name=host, id=endpoint, version="", digest="", endpoint=endpoint.rstrip("/"))

    def to_index(self) -> dict[str, Any]:
        """The entry as `plugins.json` lists it (the operator writes the same shape)."""
        return {
            "plugin": self.name,
            "id": self.id,
            "version": self.version,
            "digest": self.digest,
            "category": self.category,
            "provides": list(self.provides),
            "capabilities": list(self.capabilities),
            "inputs": list(self.inputs),
            "outputs": {"success": self.success_port, "error": self.error_port},
            "errorHandling": self.error_handling.model_dump(
                mode="json", by_alias=True, exclude_none=True
            ),
            "timeout": self.timeout_ms,
            "endpoint": self.endpoint,
        }


class PluginIndex:
    """The plugins an engine can call, found by the Plugin's name or by the plugin id."""

    def __init__(self, entries: Iterable[PluginEntry], namespace: str = "") -> None:
        self.entries: tuple[PluginEntry, ...] = tuple(entries)
        self.namespace = namespace

    def __iter__(self) -> Iterator[PluginEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, plugin: str) -> PluginEntry | None:
        """By name first (unique in a namespace), then by id (the first, should two Plugins
        carry the same id)."""
        for entry in self.entries:
            if entry.name == plugin:
                return entry
        return next((entry for entry in self.entries if entry.id == plugin), None)

    def find(self, plugin: str) -> PluginEntry:
        found = self.get(plugin)
        if found is None:
            where = f" in namespace {self.namespace}" if self.namespace else ""
            known = ", ".join(sorted(e.name for e in self.entries)) or "none"
            raise DiscoveryError(
                f'no plugin "{plugin}" (by name or id) in the plugin index{where}; serving: {known}'
            )
        return found

    @classmethod
    def from_entries(cls, entries: Sequence[Mapping[str, Any]], namespace: str = "") -> PluginIndex:
        if not isinstance(entries, Sequence) or isinstance(entries, str | bytes):
            raise DiscoveryError("a plugin index is a JSON list of entries")
        return cls((PluginEntry.from_index(e, namespace) for e in entries), namespace)

    @classmethod
    def from_json(cls, text: str | bytes, namespace: str = "") -> PluginIndex:
        """`plugins.json` as the ConfigMap holds it."""
        try:
            entries = json.loads(text)
        except ValueError as error:
            raise DiscoveryError(f"the plugin index is not JSON: {error}") from error
        return cls.from_entries(entries, namespace)

    @classmethod
    def from_config_map(cls, data: Mapping[str, str] | None, namespace: str) -> PluginIndex:
        """The `data` of ConfigMap wayang-plugin-index."""
        text = (data or {}).get(INDEX_KEY)
        if text is None:
            raise DiscoveryError(f"ConfigMap {namespace}/{INDEX_NAME} has no {INDEX_KEY}")
        return cls.from_json(text, namespace)

    @classmethod
    def from_file(
        cls, path: str | Path, endpoint: str | None = None, namespace: str = ""
    ) -> PluginIndex:
        """A file without a cluster: a JSON list like `plugins.json`, or one PluginDescriptor
        (JSON or YAML; a Plugin resource too) together with `endpoint`."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as error:
            raise DiscoveryError(f"cannot read {path}: {error.strerror or error}") from error
        try:
            document = yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader; JSON is YAML
        except yaml.YAMLError as error:
            raise DiscoveryError(f"{path} is neither JSON nor YAML: {error}") from error
        if isinstance(document, list):
            return cls.from_entries(document, namespace)
        if not isinstance(document, Mapping):
            raise DiscoveryError(f"{path}: expected a plugin index (a list) or a descriptor")
        if endpoint is None:
            raise DiscoveryError(f"{path} is one plugin's descriptor: give its endpoint too")
        try:
            entry = PluginEntry.from_descriptor(document, endpoint, namespace=namespace)
        except DiscoveryError as error:
            raise DiscoveryError(f"{path}: {error}") from error
        return cls([entry], namespace)

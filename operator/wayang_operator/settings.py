"""The operator's settings: one typed object, read from `WAYANG_*` environment variables.

Nothing else in the package reads the environment. Every field says why it exists, and each has a
default that works for a local run against `make cluster-up`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .api.descriptor import ImplementationType
from .api.resources import Peer


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="WAYANG_", frozen=True, use_attribute_docstrings=True
    )

    namespaces: list[str] = Field(default_factory=list)
    """Namespaces to govern; empty means the whole cluster (WAYANG_NAMESPACES='["a","b"]')."""
    watch_namespaces: bool = True
    """Watch namespaces so policies can select them by label (needs cluster-wide read on
    namespaces); false for operators with namespaced RBAC only."""
    wayang_version: str | None = None
    """Version of the Wayang engine the plugins will run in, for spec.wayangVersion checks."""
    standalone: bool = False
    """Run without leader election: a single replica (local runs, tests)."""
    lease_name: str = "wayang-operator"
    """The coordination.k8s.io Lease the replicas compete for: its holder decides, the others
    stand by with live indexes (they still serve admission)."""
    lease_namespace: str = "default"
    """Namespace of the Lease: the operator's own (the chart sets its release namespace)."""
    lease_duration: int = Field(default=15, ge=3)
    """Seconds without renewal after which a standby takes over from a holder that died."""
    liveness_port: int = 8080
    """Port of the liveness endpoint (/healthz)."""
    metrics_port: int = 9090
    """Port of the Prometheus metrics endpoint (/metrics)."""
    webhook_host: str = "127.0.0.1"
    """Host name the API server uses to reach the admission webhooks (in a certificate SAN)."""
    webhook_port: int = 9443
    """Port the admission webhook server listens on."""
    webhook_listen: str = "0.0.0.0"  # noqa: S104 - the webhook must be reachable by the API server
    """Address the admission webhook server binds."""
    webhook_cert_dir: Path = Path("/tmp/wayang-webhook")  # noqa: S108 - regenerated when missing
    """Where the webhook's serving certificate lives; a self-signed one is made if it is missing."""
    trivy: str = "trivy"
    """The trivy binary (a path, or a name on PATH); the operator image carries a pinned build."""
    scan_cache_dir: Path = Path.home() / ".cache" / "wayang" / "trivy"
    """trivy's cache: its vulnerability database lives in `<dir>/db`."""
    scan_db_repository: str | None = None
    """An OCI repository mirroring trivy's database, for clusters that cannot reach ghcr.io."""
    scan_offline: bool = False
    """Never download the database: use the one already in the cache (air-gapped clusters)."""
    scan_archives: Path | None = None
    """A folder of local images (OCI layout folders or tars) named by digest (`sha256-<hex>`);
    an artifact found there is scanned from it instead of being pulled from its registry."""
    artifact_ca_file: Path | None = None
    """A PEM bundle of CA certificates trusted besides the system's for artifact sources and
    registries with a private CA (the local cluster's registry): by the operator's fetch, by
    trivy's image pulls, and by the pods' fetchers (its text in their `WAYANG_ARTIFACT_CA`)."""
    scan_concurrency: int = Field(default=2, ge=1, le=64)
    """trivy runs at once; each takes a CPU and a few hundred MiB."""
    scan_timeout: float = Field(default=300.0, gt=0)
    """Seconds before a trivy run is killed and reported as a Timeout ErrorPayload."""
    scan_retry: float = Field(default=60.0, gt=0)
    """Seconds before a scan that failed with a retryable error runs again (doubling, max 1h)."""
    scan_check_interval: float = Field(default=60.0, gt=0)
    """Seconds between checks for due rescans (interval reached, or trivy's database changed)."""
    audit_store: Literal["configmap", "postgres", "log"] = "configmap"
    """Where the tamper-evident audit log lives: ConfigMaps of `audit_namespace` (default),
    PostgreSQL (`audit_postgres_dsn`), or only log lines (tests without an API server)."""
    audit_namespace: str = "default"
    """The operator's own namespace: audit ConfigMaps and the signing key Secret live there."""
    audit_postgres_dsn: str | None = None
    """libpq connection string of the PostgreSQL audit store (its role may only INSERT/SELECT)."""
    workloads: bool = True
    """Run approved plugins: a Deployment, Service, ServiceAccount, ConfigMap and NetworkPolicy
    per plugin, Ready only when its pods are. False = governance only (Ready = every gate passed;
    for clusters where something else runs plugins, and for tests without a node)."""
    workload_check_interval: float = Field(default=10.0, gt=0)
    """Seconds between observations of a workload that is not steady (deploying, failing,
    quarantined): a stuck readiness counts once per interval, the half-open trial is timed."""
    workload_ready_grace: float = Field(default=120.0, gt=0)
    """Seconds a running plugin container may stay unready before each interval counts as a
    failure for its circuit breaker."""
    plugin_metrics_from: list[Peer] = Field(default_factory=list)
    """Who may scrape the runtime hosts' metrics port (9102) of every plugin pod: network peers
    as JSON (`[{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name":
    "monitoring"}}}]`); empty = nobody outside the plugin's callers."""
    plugin_otlp_endpoint: str = ""
    """OTEL_EXPORTER_OTLP_ENDPOINT of every plugin's runtime host (OTLP over HTTP, e.g.
    http://otel-collector.observability:4318); empty = the hosts send no spans."""
    plugin_otlp_to: list[Peer] = Field(default_factory=list)
    """Where that collector is (network peers as JSON): every plugin's NetworkPolicy lets the
    runtime host reach it on the endpoint's port. Needed unless egress there is open anyway."""
    runtime_images: dict[str, str] = Field(default_factory=dict)
    """The runtime host image of each hosted implementation type, pinned by digest, as JSON
    (`{"python": "registry.example.com/wayang/runtime-python@sha256:...", "jar": "...jvm@..."}`):
    the plugins of a type without one are not runnable (their status says so)."""
    plugin_artifacts_to: list[Peer] = Field(default_factory=list)
    """Where the artifact repositories of hosted plugins are (network peers as JSON): their
    pods may reach them on the repository URL's port, to fetch the artifact before it loads."""
    webhook_configuration: str = "wayang.io"
    """Name of the Mutating/ValidatingWebhookConfiguration kopf writes and keeps up to date (one
    process, e.g. on a laptop); empty when something else owns them (the Helm chart)."""
    webhook_ca_configuration: str = ""
    """Name of the chart's Mutating/ValidatingWebhookConfiguration whose caBundle the operator
    fills in at startup (the self-signed mode); empty when cert-manager injects it."""
    webhook_cert_secret: str = ""
    """A Secret of the operator's namespace (`audit_namespace`) holding the serving certificate
    all replicas share, created by the first one to start; empty = a certificate of its own in
    `webhook_cert_dir` (or one mounted there, e.g. by cert-manager)."""
    log_format: Literal["auto", "json", "text"] = "auto"
    """Log lines as JSON objects (time, level, logger, message, and namespace/kind/plugin when a
    line concerns an object) or as text; `auto` is text on a terminal and JSON otherwise (in a
    container stdout is collected, not read)."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """The least severe level that is logged (kopf's own lines included)."""

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("runtime_images")
    @classmethod
    def _hosted_types(cls, value: dict[str, str]) -> dict[str, str]:
        """A misspelt type would leave its plugins unrunnable with no hint why."""
        hosted = sorted(
            t.value for t in ImplementationType if t is not ImplementationType.CONTAINER
        )
        for kind, image in value.items():
            if kind not in hosted:
                raise ValueError(
                    f"{kind!r} is not a hosted implementation type ({', '.join(hosted)})"
                )
            if "@sha256:" not in image:
                raise ValueError(
                    f"the {kind} runtime image {image!r} is not pinned by @sha256: digest"
                )
        return value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

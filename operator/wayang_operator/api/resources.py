"""The four custom resources of group wayang.io/v1alpha1 and how each is presented by kubectl.

Each resource is a pydantic model (validated by `wayang validate` and the operator) plus a
`ResourceInfo` that carries what only a CRD knows: names, scope, printer columns. `make manifests`
turns both into `crds/*.yaml` and `schemas/**.json`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator

from .base import (
    INTEGRAL,
    LAX,
    ApiModel,
    CelRule,
    DateTime,
    Digest,
    DnsSubdomain,
    Duration,
    LongText,
    MemoryQuantity,
    PluginId,
    SemVer,
    ShortText,
    SpdxId,
    Uri,
    cel_rules,
)
from .descriptor import (
    Capability,
    Category,
    DependencyDescriptor,
    ImplementationType,
    PluginDescriptor,
    PluginImplementation,
    ResourceProfile,
    SandboxLevel,
    UniqueList,
)
from .errors import ErrorPayload
from .meta import GROUP, KEYED_BY_TYPE, Conditions, ObjectMeta
from .scan import ScanReport as ScanReportData
from .scan import ScanSummary

# --------------------------------------------------------------------------------------------
# Plugin


class ConditionType(StrEnum):
    """The gates a Plugin passes, in order; each is one status condition."""

    VALIDATED = "Validated"
    SIGNATURE_VERIFIED = "SignatureVerified"
    POWERS_GRANTED = "PowersGranted"
    """The policies grant every power the plugin requests (capabilities, Secrets, sandbox)."""
    SCANNED = "Scanned"
    APPROVED = "Approved"
    DEPENDENCIES_RESOLVED = "DependenciesResolved"
    WORKLOAD_AVAILABLE = "WorkloadAvailable"
    """The plugin's pods serve (or workloads are not managed by this operator)."""
    READY = "Ready"


class PluginPhase(StrEnum):
    """A one-word summary of the conditions for `kubectl get` (conditions are authoritative)."""

    PENDING = "Pending"
    INVALID = "Invalid"
    BLOCKED = "Blocked"
    SCANNING = "Scanning"
    AWAITING_APPROVAL = "AwaitingApproval"
    REJECTED = "Rejected"
    REVOKED = "Revoked"
    UNRESOLVED = "Unresolved"
    DEPLOYING = "Deploying"
    READY = "Ready"
    DEGRADED = "Degraded"
    QUARANTINED = "Quarantined"
    DISABLED = "Disabled"


class ReviewStatus(StrEnum):
    """The seed descriptor's own status enum; it lives in status, never in spec."""

    PENDING = "pending"
    SCANNING = "scanning"
    APPROVED = "approved"
    REJECTED = "rejected"
    REVOKED = "revoked"
    DEPRECATED = "deprecated"


class BreakerState(StrEnum):
    CLOSED = "Closed"
    OPEN = "Open"
    HALF_OPEN = "HalfOpen"


class WorkloadFailure(ApiModel):
    reason: ShortText
    """Machine-readable: CrashLoopBackOff, OOMKilled, ErrImageNeverPull, NotReady, ..."""
    severity: Literal["INFO", "WARNING", "ERROR", "CRITICAL"]
    message: LongText


class BreakerStatus(ApiModel):
    """The circuit breaker around the workload (spec.errorHandling.circuitBreaker), kept in
    status so that a restarted or new leader continues from where the last one stopped."""

    state: Annotated[BreakerState, LAX] = BreakerState.CLOSED
    failures: Annotated[int, Field(ge=0), INTEGRAL] = 0
    """Consecutive failed observations."""
    successes: Annotated[int, Field(ge=0), INTEGRAL] = 0
    """Consecutive successful observations while half-open."""
    trips: Annotated[int, Field(ge=0), INTEGRAL] = 0
    """Times it opened since it last closed (the half-open delay doubles with each)."""
    opened_at: DateTime | None = None
    half_open_after_seconds: Annotated[float, Field(ge=0)] | None = None
    """The jittered delay chosen when it opened."""
    needs_review: bool = False
    """Opened by a failure at or above humanReviewThreshold: only a new approval releases it."""
    last_failure: WorkloadFailure | None = None
    checked_at: DateTime | None = None
    """When the workload was last observed (observations are at most one per check interval)."""
    restarts: dict[str, Annotated[int, Field(ge=0), INTEGRAL]] = Field(default_factory=dict)
    """Failures already counted, per current pod (container restarts, image errors)."""
    descriptor: ShortText | None = None
    """The hash of the descriptor this breaker is about: a new version or configuration starts
    with a closed breaker (a quarantine that needs review carries over to a configuration
    change)."""


class WorkloadStatus(ApiModel):
    """What runs for the plugin now (may be an earlier approved version during an upgrade)."""

    deployment: ShortText | None = None
    digest: Digest | None = None
    """The digest the running pods were started from."""
    version: ShortText | None = None
    replicas: Annotated[int, Field(ge=0), INTEGRAL] = 0
    """Replicas the operator asks for (0 while disabled, unloaded or quarantined)."""
    ready_replicas: Annotated[int, Field(ge=0), INTEGRAL] = 0
    runtime_class: ShortText | None = None
    """The RuntimeClass of the sandbox ("" or absent: the node's default runtime)."""
    endpoint: ShortText | None = None
    """The Service URL the Wayang engine calls."""
    breaker: BreakerStatus | None = None


class Decision(StrEnum):
    APPROVE = "Approve"
    REJECT = "Reject"
    REVOKE = "Revoke"


class ApprovalSummary(ApiModel):
    """One decision in force for the plugin's current artifact and surface."""

    approval: ShortText
    """The PluginApproval's name."""
    approver: ShortText
    """Who decided: the admission identity, or the approver key's owner for a signed approval."""
    decision: Annotated[Decision, LAX]
    reason: LongText | None = None
    """The approval's spec.reason."""
    carried_over: bool = False
    """Made for an earlier surface with at least these powers (see approvedSurface)."""


class Withdrawal(ApiModel):
    """A Reject or Revoke the operator has seen for this plugin, kept after its PluginApproval is
    deleted: approvals made before it never count again, and whoever deleted another approver's
    decision cannot approve the artifact alone."""

    approval: ShortText
    """The PluginApproval that rejected or revoked."""
    decision: Annotated[Decision, LAX]
    by: ShortText
    """Who rejected or revoked."""
    at: DateTime
    """When that PluginApproval was created: approvals made up to then are void."""
    version: ShortText
    digest: Digest
    lifted_by: ShortText | None = None
    """Who deleted the decision (admission identity); their own approvals do not lift it."""
    lifted_at: DateTime | None = None
    """When the operator recorded the deletion (informational)."""


class PluginStatus(ApiModel):
    phase: Annotated[PluginPhase, LAX] | None = None
    review_status: Annotated[ReviewStatus, LAX] | None = None
    """The descriptor's review status (seed enum)."""
    observed_generation: Annotated[int, Field(ge=0), INTEGRAL] | None = None
    conditions: Conditions | None = None
    last_error: ErrorPayload | None = None
    """The most recent error, as an ErrorPayload."""
    approved_digest: Digest | None = None
    """The artifact digest the approvals counted for."""
    approvers: Annotated[list[ShortText], Field(max_length=32)] | None = None
    """Distinct identities whose approvals are in force."""
    approved_surface: Digest | None = None
    """Digest of the approved surface (the powers) the approvals counted for."""
    approvals: Annotated[list[ApprovalSummary], Field(max_length=32)] | None = None
    """The decisions in force, with their reasons."""
    withdrawals: Annotated[list[Withdrawal], Field(max_length=16)] | None = None
    """Rejections and revocations of this plugin's artifacts, newest last (at most 16)."""
    workload: WorkloadStatus | None = None
    """The plugin's pods, when the operator runs workloads."""


class Plugin(ApiModel):
    """A Wayang plugin in a tenant namespace: its descriptor and the operator's verdict."""

    api_version: Literal["wayang.io/v1alpha1"]
    kind: Literal["Plugin"]
    metadata: ObjectMeta
    spec: PluginDescriptor
    status: PluginStatus | None = None


# --------------------------------------------------------------------------------------------
# PluginApproval


class Approver(ApiModel):
    """Identity from the API server's admission request (userInfo); a typed value is refused."""

    username: ShortText
    uid: ShortText | None = None
    groups: Annotated[list[ShortText], Field(max_length=64)] | None = None


_IMMUTABLE_SPEC = CelRule(
    rule="self == oldSelf",
    message="spec is immutable: create a new PluginApproval (for example a Revoke) instead of "
    "editing this one",
)


class ApprovedSurface(ApiModel):
    """Everything that decides what a plugin runs and what it may do: what an approval approves
    besides the artifact. `wayang.io/approved-surface/v1` (core/surface.py) hashes it."""

    implementation: PluginImplementation
    """The whole implementation block: type, coordinate, repository, digest, entrypoint, runtime."""
    sandbox_level: Annotated[SandboxLevel, LAX]
    capabilities: Annotated[list[Annotated[Capability, LAX]], Field(max_length=8)] = Field(
        default_factory=list
    )
    required_secrets: Annotated[list[ShortText], Field(max_length=32)] = Field(default_factory=list)
    """The Secret scopes the plugin mounts."""
    configuration_secrets: Annotated[list[ShortText], Field(max_length=128)] = Field(
        default_factory=list
    )
    """The Secrets its configuration reads values from (secretKeyRef)."""
    resource_profile: ResourceProfile
    provides: Annotated[list[ShortText], Field(max_length=64)] = Field(default_factory=list)
    requires: Annotated[list[ShortText], Field(max_length=64)] = Field(default_factory=list)
    dependencies: Annotated[list[DependencyDescriptor], Field(max_length=64)] = Field(
        default_factory=list
    )
    configuration: dict[str, Any] | None = None
    """Present only where a policy binds configuration (approval.bindConfiguration)."""


class PluginApprovalSpec(ApiModel):
    model_config = ConfigDict(json_schema_extra=cel_rules(_IMMUTABLE_SPEC))

    plugin: DnsSubdomain
    """Name of the Plugin resource in the same namespace."""
    plugin_id: PluginId
    """The plugin's spec.id; must match the Plugin."""
    version: SemVer
    """The exact version approved."""
    digest: Digest
    """The exact artifact digest approved; an approval never carries over to other bytes."""
    decision: Annotated[Decision, LAX]
    reason: LongText | None = None
    """Why; shown in the Plugin's status and kept in the audit log."""
    surface_digest: Digest | None = None
    """The approved surface's digest as the approver saw it (`kubectl wayang approve` fills it
    in): refused unless the Plugin declares exactly that surface when the approval is made.
    Stamped by the admission webhook when omitted."""
    surface: ApprovedSurface | None = None
    """The powers approved, copied by the admission webhook from the live Plugin at creation
    (a typed value is overwritten): a later change of the Plugin that grows any of them needs
    new approvals."""
    signature: Annotated[str, Field(max_length=8192)] | None = None
    """`<approver key name>:<base64>` over this decision (`kubectl wayang approve --sign`): how an
    approval synced from Git (created by a ServiceAccount such as Argo CD's) names its approver.
    Checked against the policy's approval.approverKeys."""
    approver: Approver | None = None
    """Set by the admission webhook from the requester's identity."""


class ApprovalPhase(StrEnum):
    PENDING = "Pending"
    IN_FORCE = "InForce"
    STALE = "Stale"
    IGNORED = "Ignored"


class PluginApprovalStatus(ApiModel):
    phase: Annotated[ApprovalPhase, LAX] | None = None
    message: LongText | None = None
    observed_generation: Annotated[int, Field(ge=0), INTEGRAL] | None = None
    conditions: Conditions | None = None


class PluginApproval(ApiModel):
    """A cluster admin's decision about one exact artifact: plugin, version and digest."""

    api_version: Literal["wayang.io/v1alpha1"]
    kind: Literal["PluginApproval"]
    metadata: ObjectMeta
    spec: PluginApprovalSpec
    status: PluginApprovalStatus | None = None


# --------------------------------------------------------------------------------------------
# PluginPolicy


class LabelSelectorRequirement(ApiModel):
    key: ShortText
    """The namespace label's key."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    """How the label's value relates to `values`."""
    values: Annotated[list[ShortText], Field(max_length=64)] | None = None
    """The values for In and NotIn; empty for Exists and DoesNotExist."""


class LabelSelector(ApiModel):
    """A Kubernetes label selector; an empty selector matches every namespace."""

    match_labels: dict[str, str] | None = None
    """Labels a namespace must carry, with these values."""
    match_expressions: Annotated[list[LabelSelectorRequirement], Field(max_length=16)] | None = None
    """Requirements a namespace's labels must all meet."""


class KeyAlgorithm(StrEnum):
    ED25519 = "ed25519"
    ECDSA_P256 = "ecdsa-p256"


class TrustedKey(ApiModel):
    name: Annotated[str, Field(pattern="^[a-zA-Z0-9._-]+$", max_length=63)]
    """The key's name: a signature `<name>:<base64>` names the key that made it."""
    algorithm: Annotated[KeyAlgorithm, LAX]
    """Ed25519, or ECDSA P-256 with SHA-256."""
    public_key: Annotated[str, Field(min_length=1, max_length=4096)]
    """PEM-encoded public key (SubjectPublicKeyInfo)."""
    owner: ShortText | None = None
    """The person or team who holds the key (default: `key:<name>`): for a publisher key, the
    publisher of the plugins it signs; for an approver key, the approver. Self-approval is
    judged by it when a ServiceAccount (GitOps) created the objects."""


class SigningPolicy(ApiModel):
    required: bool = True
    """Whether plugins must carry a valid signature from a trusted key."""
    trusted_keys: Annotated[list[TrustedKey], Field(max_length=32)] | None = None
    """The keys whose signatures this policy accepts (`wayang keygen` prints an entry)."""
    require_surface: bool = False
    """Accept only signatures over the whole approved surface (payload v2, what `wayang sign`
    writes), not v1 signatures that cover only id, version, type, coordinate and digest."""


class MaxCounts(ApiModel):
    """Most findings tolerated per severity, on top of maxSeverity; omitted: no count limit."""

    critical: Annotated[int, Field(ge=0), INTEGRAL] | None = None
    """Most CRITICAL vulnerabilities tolerated."""
    high: Annotated[int, Field(ge=0), INTEGRAL] | None = None
    """Most HIGH vulnerabilities tolerated."""
    medium: Annotated[int, Field(ge=0), INTEGRAL] | None = None
    """Most MEDIUM vulnerabilities tolerated."""
    low: Annotated[int, Field(ge=0), INTEGRAL] | None = None
    """Most LOW vulnerabilities tolerated."""


class SeverityThreshold(StrEnum):
    """The highest vulnerability severity a policy tolerates; NONE tolerates none."""

    CRITICAL = "CRITICAL"
    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    LOW = "LOW"
    INFO = "INFO"
    NONE = "NONE"


class ScanPolicy(ApiModel):
    required: bool = True
    """Whether a passing scan is needed before approval counts."""
    max_severity: Annotated[SeverityThreshold, LAX] = SeverityThreshold.MEDIUM
    """Highest severity allowed; the default blocks HIGH and CRITICAL findings."""
    max_counts: MaxCounts | None = None
    """Most vulnerabilities tolerated per severity."""
    ignore_unfixed: bool = False
    """Whether vulnerabilities without a fixed version are left out of severity and counts."""
    block_secrets: bool = True
    """Whether any secret found in the image (a key, a token) blocks the plugin."""
    allowed_licenses: Annotated[UniqueList[SpdxId], Field(max_length=256)] | None = None
    """SPDX ids of the only licenses allowed; omitted allows any not denied."""
    denied_licenses: Annotated[UniqueList[SpdxId], Field(max_length=256)] | None = None
    """SPDX ids of licenses that block the plugin."""
    rescan_interval: Duration = "24h"
    """How often a digest is scanned again (the shortest interval among policies wins)."""
    max_database_age: Duration = "72h"
    """Oldest vulnerability database whose scan this policy accepts."""


class ApprovalRequirement(ApiModel):
    """How many distinct approvers plugins matching all the given selectors need."""

    sandbox_level: Annotated[SandboxLevel, LAX] | None = None
    """Only plugins with this sandbox level; omitted: any."""
    capability: Annotated[Capability, LAX] | None = None
    """Only plugins that declare this capability; omitted: any."""
    category: Annotated[Category, LAX] | None = None
    """Only plugins of this category; omitted: any."""
    approvers: Annotated[int, Field(ge=0, le=16), INTEGRAL]
    """Distinct approvers needed (0: no approval needed)."""


class AutoApprovalRule(ApiModel):
    """A CEL rule that approves the plugins it is true for, without a person."""

    name: Annotated[str, Field(pattern="^[a-zA-Z0-9._-]+$", max_length=63)]
    """The rule's name."""
    expression: Annotated[str, Field(min_length=1, max_length=4096)]
    """CEL over `plugin` (the spec) and `scan` (the summary); true approves automatically."""
    description: LongText | None = None
    """What the rule is for, for people."""


class ApprovalPolicy(ApiModel):
    requirements: Annotated[list[ApprovalRequirement], Field(max_length=32)] | None = None
    """The highest count among matching requirements applies; with none, one approver."""
    allow_self_approval: bool = False
    """Whether a publisher (whoever created the Plugin or changed its approved surface) may
    approve it."""
    auto_approve: Annotated[list[AutoApprovalRule], Field(max_length=32)] | None = None
    """Rules that approve automatically; a rule that fails to evaluate approves nothing."""
    bind_configuration: bool = False
    """Make `configuration` part of the approved surface: any change of it then needs new
    approvals (off by default: plugins stay reconfigurable without one)."""
    approver_keys: Annotated[list[TrustedKey], Field(max_length=32)] | None = None
    """Keys whose signatures (spec.signature) make a PluginApproval created by a ServiceAccount
    (Argo CD, Flux, a CI job) count, for the key's owner; without one it counts for nothing."""


class TypeRuntimeClasses(ApiModel):
    """The RuntimeClass per sandbox level of one implementation type, where it differs from
    the level's (a wasm module is itself a sandbox, so a policy may run semi-trusted wasm on
    runc and keep gVisor for semi-trusted containers)."""

    type: Annotated[ImplementationType, LAX]
    """The implementation type these RuntimeClasses are for."""
    trusted: ShortText | None = None
    """RuntimeClass of trusted plugins of this type; omitted: the level's."""
    semi_trusted: ShortText | None = Field(default=None, alias="semi-trusted")
    """RuntimeClass of semi-trusted plugins of this type; omitted: the level's."""
    untrusted: ShortText | None = None
    """RuntimeClass of untrusted plugins of this type; omitted: the level's."""


class RuntimeClasses(ApiModel):
    """RuntimeClass per sandbox level; empty means the node's default runtime (runc)."""

    trusted: ShortText = ""
    """RuntimeClass of trusted plugins."""
    semi_trusted: ShortText = Field(default="gvisor", alias="semi-trusted")
    """RuntimeClass of semi-trusted plugins."""
    untrusted: ShortText = "gvisor"
    """RuntimeClass of untrusted plugins."""
    by_type: (
        Annotated[
            list[TypeRuntimeClasses],
            Field(max_length=8, json_schema_extra=KEYED_BY_TYPE),
        ]
        | None
    ) = None
    """Per implementation type, the levels whose RuntimeClass differs for that type. When a
    policy names runtimeClasses, types it does not list here run under the level's class."""


class Port(ApiModel):
    port: Annotated[int, Field(ge=1, le=65535), INTEGRAL]
    """The destination port."""
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    """The transport protocol."""


_PEER_RULE = CelRule(
    rule="has(self.cidr) != (has(self.namespaceSelector) || has(self.podSelector))",
    message="a peer is either cidr or namespaceSelector/podSelector, not both or neither",
)


class Peer(ApiModel):
    """A network peer: an address block, or pods chosen by namespace and pod labels."""

    model_config = ConfigDict(
        json_schema_extra={
            **cel_rules(_PEER_RULE),
            "allOf": [  # the same rule for JSON Schema (the CRD keeps only the CEL twin)
                {
                    "if": {"required": ["cidr"], "properties": {"cidr": {"type": "string"}}},
                    "then": {
                        "properties": {
                            "namespaceSelector": {"type": "null"},
                            "podSelector": {"type": "null"},
                        }
                    },
                },
                {
                    "if": {"properties": {"cidr": {"type": "null"}}},
                    "then": {
                        "anyOf": [
                            {
                                "required": [name],
                                "properties": {name: {"type": "object"}},
                            }
                            for name in ("namespaceSelector", "podSelector")
                        ]
                    },
                },
            ],
        }
    )

    cidr: Annotated[str, Field(pattern="^[0-9a-fA-F.:]+/[0-9]+$", max_length=64)] | None = None
    """An address block, e.g. 10.20.0.0/16."""
    except_: Annotated[list[ShortText], Field(max_length=16)] | None = Field(
        default=None, alias="except"
    )
    """Blocks inside cidr that stay closed."""
    namespace_selector: LabelSelector | None = None
    """Namespaces of the peer pods (omitted: the plugin's own namespace)."""
    pod_selector: LabelSelector | None = None
    """The peer pods (omitted: every pod of the selected namespaces)."""

    @model_validator(mode="after")
    def _one_kind(self) -> Peer:
        selectors = self.namespace_selector is not None or self.pod_selector is not None
        if (self.cidr is not None) == selectors:
            raise ValueError(_PEER_RULE.message)
        return self


class EgressRule(Peer):
    ports: Annotated[list[Port], Field(max_length=16)] | None = None
    """Ports the rule opens (omitted: every port)."""


class NetworkGrant(ApiModel):
    egress: Annotated[list[EgressRule], Field(max_length=32)] | None = None
    """Where a plugin with `network` may connect; omitted: anywhere."""


class EgressGrant(ApiModel):
    egress: Annotated[list[EgressRule], Field(min_length=1, max_length=32)]
    """The destinations the capability opens, and nothing else."""


class FilesystemGrant(ApiModel):
    size_limit: MemoryQuantity = "1Gi"
    """Size of the writable volume (an emptyDir at /data) a plugin with `filesystem` gets."""


class GpuGrant(ApiModel):
    max: Annotated[int, Field(ge=1, le=64), INTEGRAL] = 1
    """Most GPUs one plugin may ask for (resourceProfile.gpu)."""


class CapabilityGrants(ApiModel):
    """What each capability a plugin requests is granted. A capability absent here is not
    granted: a plugin that requests it is Blocked, with the capability named. Untrusted plugins
    are granted no capability that opens the network."""

    network: NetworkGrant | None = None
    """Egress beyond DNS (anywhere, or the rules given)."""
    filesystem: FilesystemGrant | None = None
    """A writable volume; without it a plugin has no writable path at all."""
    gpu: GpuGrant | None = None
    """GPUs; the only way resourceProfile.gpu is honoured."""
    database: EgressGrant | None = None
    """Egress to the databases named."""
    llm_access: EgressGrant | None = Field(default=None, alias="llm_access")
    """Egress to the LLM endpoints named."""
    rag_access: EgressGrant | None = Field(default=None, alias="rag_access")
    """Egress to the retrieval services named."""
    memory_access: EgressGrant | None = Field(default=None, alias="memory_access")
    """Egress to the agent-memory services named."""
    tool_execution: EgressGrant | None = Field(default=None, alias="tool_execution")
    """Egress to the tool runners named."""


class SecretsPolicy(ApiModel):
    allowed: Annotated[list[ShortText], Field(max_length=64)] | None = None
    """Secret names, or shell-style patterns (`db-*`), that plugins may mount, after a scope is
    mapped to a name (`db/readonly` → `db-readonly`: lower case, every character outside
    a-z, 0-9, '-' and '.' becomes '-'). Omitted or empty: no Secret may be mounted."""


class PluginPolicySpec(ApiModel):
    namespace_selector: LabelSelector | None = None
    """Namespaces this policy covers; omitted or empty covers all."""
    signing: SigningPolicy | None = None
    """Signatures: whether required, and by which keys."""
    allowed_registries: Annotated[list[ShortText], Field(max_length=64)] | None = None
    """Prefixes an artifact's location must start with (implementation.repository if set, else
    the coordinate; URL schemes are ignored); omitted allows any."""
    scan: ScanPolicy | None = None
    """What a scan of the plugin's artifact may find."""
    approval: ApprovalPolicy | None = None
    """How many people must approve, and what is approved automatically."""
    runtime_classes: RuntimeClasses | None = None
    """The RuntimeClass each sandbox level runs under."""
    secrets: SecretsPolicy | None = None
    """Which Secrets plugins may mount (requiredSecrets and configuration secretKeyRefs)."""
    capabilities: CapabilityGrants | None = None
    """What each requested capability is granted; omitted: `network` (egress anywhere),
    `filesystem` (1Gi) and `gpu` (1) are granted, the capabilities that need named
    destinations are not."""
    callers: Annotated[list[Peer], Field(max_length=32)] | None = None
    """Who may call plugins besides the pods of their own namespace (the Wayang engine)."""


class PluginPolicyStatus(ApiModel):
    observed_generation: Annotated[int, Field(ge=0), INTEGRAL] | None = None
    conditions: Conditions | None = None


class PluginPolicy(ApiModel):
    """Cluster-wide rules: trusted keys, registries, scan thresholds, approvals, sandboxes."""

    api_version: Literal["wayang.io/v1alpha1"]
    kind: Literal["PluginPolicy"]
    metadata: ObjectMeta
    spec: PluginPolicySpec
    status: PluginPolicyStatus | None = None


# --------------------------------------------------------------------------------------------
# ScanReport


class Artifact(ApiModel):
    coordinate: Annotated[str, Field(min_length=1, max_length=512)]
    digest: Digest
    type: Annotated[ImplementationType, LAX] | None = None
    """The plugin's implementation type: how the artifact is fetched and read (an image is
    pulled; a wheel is fetched from `repository`, checked and unpacked). Absent: `container`.
    No schema default: the API server would add it to the spec the operator signed."""
    repository: Uri | None = None
    """Where a fetched artifact comes from (the plugin's implementation.repository)."""


class ScanReportSpec(ApiModel):
    artifact: Artifact
    """The scanned artifact; one ScanReport per digest, shared by every Plugin using it."""
    plugin_id: ShortText
    """The plugin that first asked for this scan (the seed report names one)."""
    version: ShortText
    pull_secret: ShortText | None = None
    """A dockerconfigjson Secret of the namespace whose credentials trivy pulls with."""
    attestation: Annotated[str, Field(max_length=256)] | None = None
    """The operator's signature over this spec (core/attestation.py): a ScanReport the operator
    did not request is never scanned, and is replaced when a plugin needs its digest."""


class ScanReportStatus(ApiModel):
    observed_generation: Annotated[int, Field(ge=0), INTEGRAL] | None = None
    conditions: Conditions | None = None
    report: ScanReportData | None = None
    """The seed's ScanReport; finding lists are capped, most severe first."""
    fixable: ScanSummary | None = None
    """Counts of the vulnerabilities that have a fixed version (policy `ignoreUnfixed`)."""
    truncated: Annotated[int, Field(ge=0), INTEGRAL] | None = None
    """Findings left out of the report by the cap."""
    database_updated_at: DateTime | None = None
    """When trivy's vulnerability database was built (its metadata.json UpdatedAt)."""
    next_scan_at: DateTime | None = None
    runs: Annotated[int, Field(ge=0), INTEGRAL] | None = None
    """How many times trivy ran for this report (rescans included)."""
    last_error: ErrorPayload | None = None
    """Why the latest scan failed; a previous report, if any, stays until a scan succeeds."""
    attestation: Annotated[str, Field(max_length=256)] | None = None
    """The operator's signature over this status: a status it did not write is never read."""


class ScanReport(ApiModel):
    """The result of scanning one artifact digest."""

    api_version: Literal["wayang.io/v1alpha1"]
    kind: Literal["ScanReport"]
    metadata: ObjectMeta
    spec: ScanReportSpec
    status: ScanReportStatus | None = None


def report_name(digest: str) -> str:
    """The ScanReport of a digest: `sha256:abc…` → `sha256-abc…`, a valid object name, one per
    digest (the operator creates it under this name; the CLI and explain look it up by it)."""
    return digest.replace(":", "-")


# --------------------------------------------------------------------------------------------
# Presentation


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0

    def to_crd(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.description:
            out["description"] = self.description
        if self.priority:
            out["priority"] = self.priority
        return out


def _condition(kind: ConditionType) -> str:
    return f'.status.conditions[?(@.type=="{kind.value}")].status'


AGE = PrinterColumn("Age", ".metadata.creationTimestamp", "date")


@dataclass(frozen=True)
class ResourceInfo:
    model: type[ApiModel]
    kind: str
    plural: str
    short_names: tuple[str, ...]
    namespaced: bool
    columns: tuple[PrinterColumn, ...]

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


CATEGORY = "wayang"
"""`kubectl get wayang` lists every resource of this project."""

RESOURCES: tuple[ResourceInfo, ...] = (
    ResourceInfo(
        Plugin,
        "Plugin",
        "plugins",
        ("wpl",),
        namespaced=True,
        columns=(
            PrinterColumn("Plugin-ID", ".spec.id", priority=1),
            PrinterColumn("Version", ".spec.version"),
            PrinterColumn("Sandbox", ".spec.sandboxLevel"),
            PrinterColumn("Phase", ".status.phase"),
            PrinterColumn("Approved", _condition(ConditionType.APPROVED)),
            PrinterColumn("Ready", _condition(ConditionType.READY)),
            PrinterColumn("Pods", ".status.workload.readyReplicas", "integer", priority=1),
            PrinterColumn("Runtime", ".status.workload.runtimeClass", priority=1),
            PrinterColumn("Digest", ".spec.implementation.digest", priority=1),
            AGE,
        ),
    ),
    ResourceInfo(
        PluginApproval,
        "PluginApproval",
        "pluginapprovals",
        ("wpa",),
        namespaced=True,
        columns=(
            PrinterColumn("Plugin", ".spec.plugin"),
            PrinterColumn("Version", ".spec.version"),
            PrinterColumn("Decision", ".spec.decision"),
            PrinterColumn("Approver", ".spec.approver.username"),
            PrinterColumn("Phase", ".status.phase"),
            PrinterColumn("Digest", ".spec.digest", priority=1),
            AGE,
        ),
    ),
    ResourceInfo(
        PluginPolicy,
        "PluginPolicy",
        "pluginpolicies",
        ("wpp",),
        namespaced=False,
        columns=(
            PrinterColumn("Signing", ".spec.signing.required", "boolean"),
            PrinterColumn("Max-Severity", ".spec.scan.maxSeverity"),
            AGE,
        ),
    ),
    ResourceInfo(
        ScanReport,
        "ScanReport",
        "scanreports",
        ("wsr",),
        namespaced=True,
        columns=(
            PrinterColumn("Status", ".status.report.status"),
            PrinterColumn("Critical", ".status.report.summary.criticalCount", "integer"),
            PrinterColumn("High", ".status.report.summary.highCount", "integer"),
            PrinterColumn("Error", ".status.lastError.type"),
            PrinterColumn("Scanned", ".status.report.timestamp", "date"),
            PrinterColumn("Digest", ".spec.artifact.digest", priority=1),
            AGE,
        ),
    ),
)

RESOURCES_BY_KIND: dict[str, ResourceInfo] = {info.kind: info for info in RESOURCES}

"""Every constraint the seed states, and the ones this project adds, one case each.

Each case starts from a valid document, changes one field, and checks that validation fails with
a message that names that field (or, for `ok` cases, that the change is accepted). The messages
come from the same code path as `wayang validate` and the operator's Validated condition.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import pytest
from pydantic import BaseModel
from tests import documents as d
from tests.documents import DELETE, mutated

from wayang_operator.api.audit import PluginAuditEvent
from wayang_operator.api.descriptor import (
    Category,
    PluginDescriptor,
    ResourceProfile,
    RetryPolicy,
    SandboxLevel,
)
from wayang_operator.api.errors import ERROR_PAYLOAD_SCHEMA_REF, ErrorPayload
from wayang_operator.api.resources import Plugin, PluginApproval, PluginPolicy
from wayang_operator.api.scan import ScanReport
from wayang_operator.manifests.validate import check_model, format_path

REQUIRED = "required field is missing"


class Case(NamedTuple):
    path: str
    value: Any
    error: str | None
    """Expected text in the message for `path`; None means the change is valid."""


def problems(model: type[BaseModel], document: dict[str, Any]) -> dict[str, str]:
    return {format_path(path): message for path, message in check_model(model, document)}


def run_case(model: type[BaseModel], base: Callable[[], dict[str, Any]], case: Case) -> None:
    """The problem must be reported at `case.path` or inside it (an item of a list value)."""
    found = problems(model, mutated(base(), case.path, case.value))
    if case.error is None:
        assert found == {}, f"{case.path}={case.value!r} should be valid"
        return
    inside = {
        path: message
        for path, message in found.items()
        if path == case.path or path.startswith((case.path + "[", case.path + "."))
    }
    assert inside, f"no problem named {case.path}; got {found}"
    assert any(case.error in message for message in inside.values()), inside


DESCRIPTOR_CASES = [
    # required fields of the seed's PluginDescriptor
    *(Case(name, DELETE, REQUIRED) for name in ("id", "name", "version", "implementation")),
    Case("inputs", DELETE, REQUIRED),
    Case("outputs", DELETE, REQUIRED),
    # id: the seed's pattern, relaxed to reverse-DNS namespaces
    Case("id", "com.example/data-processor", None),
    Case("id", "payments/payment-executor", None),
    Case("id", "Com.Example/x", "NAMESPACE/NAME"),
    Case("id", "no-slash", "NAMESPACE/NAME"),
    Case("id", "a/b/c", "NAMESPACE/NAME"),
    Case("id", "com..example/x", "NAMESPACE/NAME"),
    Case("id", 42, "valid string"),
    # name
    Case("name", "ab", "at least 3"),
    Case("name", "x" * 129, "at most 128"),
    Case("name", "abc", None),
    # version: semver
    Case("version", "1.0", "semantic version"),
    Case("version", "01.0.0", "semantic version"),
    Case("version", "1.0.0-", "semantic version"),
    Case("version", "v1.0.0", "semantic version"),
    Case("version", "1.0.0-rc.1+build.5", None),
    # description, author
    Case("description", "x" * 1001, "at most 1000"),
    Case("author.email", "not-an-email", "e-mail"),
    Case("author.email", "dev@example.com", None),
    Case("author.nickname", "x", "unknown field"),
    # implementation
    Case("implementation.type", "npm", "must be one of"),
    Case("implementation.coordinate", DELETE, REQUIRED),
    Case("implementation.digest", DELETE, REQUIRED),
    Case("implementation.type", DELETE, REQUIRED),
    Case("implementation.digest", "md5:" + "a" * 32, "ALGORITHM:HEX"),
    Case("implementation.digest", "sha256:" + "a" * 63, "ALGORITHM:HEX"),
    Case("implementation.digest", "sha256:" + "A" * 64, "ALGORITHM:HEX"),
    Case("implementation.digest", "sha256:" + "a" * 100, "ALGORITHM:HEX"),
    Case("implementation.digest", d.SHA512, None),
    Case("implementation.digest", d.BLAKE3, None),
    Case("implementation.repository", "not a uri", "absolute URI"),
    Case("implementation.repository", "https://repo.example.com/maven2", None),
    Case("implementation.runtime.javaVersion", "21", None),
    Case("implementation.runtime.goVersion", "1.26", "unknown field"),
    # inputs (PortDescriptor)
    Case("inputs[0].name", "1records", "identifier"),
    Case("inputs[0].schema", DELETE, REQUIRED),
    Case("inputs[0].schema", 5, "valid dictionary"),
    Case("inputs[0].schema", "https://schemas.example.com/in.json", None),
    Case("inputs[0].required", "yes", "valid boolean"),
    Case("inputs[0].defaultValue", [1, 2], None),
    # outputs: both ports, error port is the ErrorPayload
    Case("outputs.error", DELETE, REQUIRED),
    Case("outputs.success", DELETE, REQUIRED),
    Case("outputs.error.schema", "/schemas/Other.json", ERROR_PAYLOAD_SCHEMA_REF),
    Case("outputs.error.schema", {"type": "object"}, ERROR_PAYLOAD_SCHEMA_REF),
    Case("outputs.success.name", "has space", "identifier"),
    # properties (PropertyDescriptor)
    Case("properties", [{"name": "limit", "type": "integer", "default": 5}], None),
    Case("properties", [{"name": "limit"}], REQUIRED),
    Case("properties", [{"name": "limit", "type": "decimal"}], "must be one of"),
    Case("properties", [{"name": "1limit", "type": "integer"}], "identifier"),
    Case("properties", [{"name": "x", "type": "number", "validation": {"min": "0"}}], "number"),
    Case("properties", [{"name": "x", "type": "string", "sensitive": "yes"}], "valid boolean"),
    # capabilities: enum, uniqueItems
    Case("capabilities", ["network", "gpu"], None),
    Case("capabilities", ["teleport"], "must be one of"),
    Case("capabilities", ["network", "network"], "duplicate item"),
    # sandboxLevel
    Case("sandboxLevel", "paranoid", "must be one of"),
    Case("sandboxLevel", "untrusted", None),
    # resourceProfile
    Case("resourceProfile.cpu", "1.5", "millicores"),
    Case("resourceProfile.cpu", "500m", None),
    Case("resourceProfile.memory", "256MB", "256Mi"),
    Case("resourceProfile.memory", "1Gi", None),
    Case("resourceProfile.gpu", -1, "greater than or equal to 0"),
    Case("resourceProfile.gpu", "2", "valid integer"),
    Case("resourceProfile.ephemeralStorage", "1T", "256Mi"),
    Case("resourceProfile.timeout", 999, "greater than or equal to 1000"),
    Case("resourceProfile.timeout", 1000, None),
    # errorHandling
    Case("errorHandling.retryPolicy.maxAttempts", 11, "less than or equal to 10"),
    Case("errorHandling.retryPolicy.maxAttempts", -1, "greater than or equal to 0"),
    Case("errorHandling.retryPolicy.backoff", "random", "must be one of"),
    Case("errorHandling.retryPolicy.initialDelayMs", 99, "greater than or equal to 100"),
    Case("errorHandling.retryPolicy.jitter", "true", "valid boolean"),
    Case("errorHandling.humanReviewThreshold", "FATAL", "must be one of"),
    Case("errorHandling.autoHealEnabled", 1, "valid boolean"),
    Case("errorHandling.circuitBreaker.failureThreshold", 0, "greater than or equal to 1"),
    Case("errorHandling.fallbackNodeId", "manual-review", None),
    # checksum, signature, createdAt, tags
    Case("checksum", "sha1:" + "a" * 40, "ALGORITHM:HEX"),
    Case("checksum", d.BLAKE3, None),
    Case("createdAt", "yesterday", "RFC 3339"),
    Case("createdAt", "2026-01-31T12:00:00+01:00", None),
    Case("tags", ["a", 1], "valid string"),
    # dependencies (DependencyDescriptor)
    Case("dependencies", [{"id": "x"}], REQUIRED),
    Case("dependencies", [{"id": "x", "version": "latest"}], "semver range"),
    Case("dependencies", [{"id": "x", "version": "^1.2.0", "scope": "provided"}], "must be one of"),
    Case("dependencies", [{"id": "x", "version": "^1.2.0", "optional": True}], None),
    # additions: provides/requires, wayangVersion, enabled, category, configuration
    Case("provides", ["executor.payment.charge"], None),
    Case("provides", ["Bad Name"], "dotted capability name"),
    Case("requires", ["security.jwt", "security.jwt"], "duplicate item"),
    Case("wayangVersion", ">=1.4.0 <2.0.0 || ^3.0.0", None),
    Case("wayangVersion", "1.x", "semver range"),
    Case("enabled", "no", "valid boolean"),
    Case("category", "billing", "must be one of"),
    Case("category", "security", None),
    Case("configuration", {"anything": {"nested": [1, 2]}}, None),
    Case("configuration", "flat", "valid dictionary"),
    # the seed's status enum belongs to status, not spec
    Case("status", "approved", "unknown field"),
    Case("sandboxlevel", "trusted", "did you mean 'sandboxLevel'"),
]


@pytest.mark.parametrize(
    "case", DESCRIPTOR_CASES, ids=lambda case: f"{case.path}={case.value!r}"[:80]
)
def test_descriptor_constraint(case: Case) -> None:
    run_case(PluginDescriptor, d.descriptor, case)


CONTAINER_CASES = [
    Case("implementation.digest", d.SHA256, None),
    Case("implementation.digest", d.SHA512, None),
    Case("implementation.digest", d.BLAKE3, "pinned by an OCI image digest"),
    Case("implementation.coordinate", "registry.example.com/x:1.0", None),
    Case(
        "implementation.coordinate",
        f"registry.example.com/x@{d.SHA256}",
        "belongs in implementation.digest",
    ),
]


@pytest.mark.parametrize(
    "case", CONTAINER_CASES, ids=lambda case: f"{case.path}={case.value!r}"[:80]
)
def test_container_artifacts_are_pinned_by_oci_digest(case: Case) -> None:
    def container() -> dict[str, Any]:
        return mutated(d.descriptor(), "implementation.type", "container")

    run_case(PluginDescriptor, container, case)


def test_descriptor_defaults_follow_the_seed() -> None:
    spec = PluginDescriptor.model_validate(d.descriptor())
    assert spec.sandbox_level is SandboxLevel.SEMI_TRUSTED
    assert spec.enabled is True
    assert spec.category is Category.NODE
    assert spec.inputs[0].required is True
    profile = ResourceProfile()
    assert (profile.cpu, profile.memory, profile.gpu, profile.timeout) == (
        "100m",
        "128Mi",
        0,
        30000,
    )
    retry = RetryPolicy()
    assert (retry.max_attempts, retry.backoff, retry.initial_delay_ms) == (3, "exponential", 500)
    assert (retry.max_delay_ms, retry.jitter) == (30000, True)
    with_handling = PluginDescriptor.model_validate(
        mutated(d.descriptor(), "errorHandling", {"circuitBreaker": {}})
    )
    assert with_handling.error_handling is not None
    assert with_handling.error_handling.human_review_threshold == "CRITICAL"
    assert with_handling.error_handling.auto_heal_enabled is False
    breaker = with_handling.error_handling.circuit_breaker
    assert breaker is not None
    assert (breaker.enabled, breaker.failure_threshold, breaker.success_threshold) == (True, 5, 2)
    assert breaker.timeout_ms == 60000


def test_error_port_reference_is_the_published_error_payload_schema() -> None:
    schema = PluginDescriptor.model_json_schema(by_alias=True)["$defs"]["ErrorPortDescriptor"]
    assert schema["properties"]["schema"]["const"] == ERROR_PAYLOAD_SCHEMA_REF


ERROR_PAYLOAD_CASES = [
    *(
        Case(name, DELETE, REQUIRED)
        for name in ("type", "message", "timestamp", "originNode", "retryable")
    ),
    Case("type", "Oops", "must be one of"),
    Case("type", "LLMError", None),
    Case("retryable", "true", "valid boolean"),
    Case("originRunId", "not-a-uuid", "UUID"),
    Case("originRunId", d.UUID, None),
    Case("attempt", -1, "greater than or equal to 0"),
    Case("maxAttempts", -1, "greater than or equal to 0"),
    Case("attempt", 2, None),
    Case("timestamp", "2026-13-01", "RFC 3339"),
    Case("suggestedAction", "panic", "must be one of"),
    Case("suggestedAction", "human_review", None),
    Case("provenanceRef", "123", "UUID"),
    Case("details", {"any": ["thing"]}, None),
    Case("details", "text", "valid dictionary"),
    Case("stackTrace", "Traceback ...", None),
    Case("severity", "HIGH", "unknown field"),
]


@pytest.mark.parametrize(
    "case", ERROR_PAYLOAD_CASES, ids=lambda case: f"{case.path}={case.value!r}"[:80]
)
def test_error_payload_constraint(case: Case) -> None:
    run_case(ErrorPayload, d.error_payload, case)


AUDIT_CASES = [
    *(
        Case(name, DELETE, REQUIRED)
        for name in ("auditId", "eventType", "pluginId", "timestamp", "actor")
    ),
    Case("auditId", "1234", "UUID"),
    Case("eventType", "PLUGIN_DELETED", "must be one of"),
    Case("eventType", "PLUGIN_UPDATED", None),
    Case("actor.type", "robot", "must be one of"),
    Case("actor.id", DELETE, REQUIRED),
    Case("actor.type", DELETE, REQUIRED),
    Case("actor.name", "Approver One", None),
    Case("hash", "sha256:" + "a" * 64, "blake3:<64 lowercase hex>"),
    Case("hash", "blake3:" + "a" * 64, None),
    Case("timestamp", "now", "RFC 3339"),
    Case("error", {"type": "Timeout"}, REQUIRED),
    Case("error", d.error_payload(), None),
    Case("tenantId", "team-a", None),
]


@pytest.mark.parametrize("case", AUDIT_CASES, ids=lambda case: f"{case.path}={case.value!r}"[:80])
def test_audit_event_constraint(case: Case) -> None:
    run_case(PluginAuditEvent, d.audit_event, case)


SCAN_CASES = [
    *(
        Case(name, DELETE, REQUIRED)
        for name in ("scanId", "pluginId", "version", "timestamp", "status")
    ),
    Case("status", "OK", "must be one of"),
    Case("status", "WARNING", None),
    Case("scanId", "scan-1", "UUID"),
    Case("scanner", {"name": "trivy", "version": "0.59.1"}, None),
    Case("vulnerabilities", [{"cve": "CVE-2026-1", "severity": "SEVERE"}], "must be one of"),
    Case(
        "vulnerabilities", [{"cve": "CVE-2026-1", "severity": "HIGH", "fixedVersion": "2.0"}], None
    ),
    Case("licenses", [{"spdxId": "MIT", "approved": "yes"}], "valid boolean"),
    Case(
        "secrets", [{"type": "aws-access-key", "file": "/app/.env", "line": "3"}], "valid integer"
    ),
    Case("secrets", [{"type": "aws-access-key", "file": "/app/.env", "line": 3}], None),
    Case("summary", {"totalVulnerabilities": 2, "criticalCount": 1, "highCount": 1}, None),
    Case("summary", {"criticalCount": -1}, "greater than or equal to 0"),
    Case("summary", {"criticalCount": 1.5}, "valid integer"),
]


@pytest.mark.parametrize("case", SCAN_CASES, ids=lambda case: f"{case.path}={case.value!r}"[:80])
def test_scan_report_constraint(case: Case) -> None:
    run_case(ScanReport, d.scan_report, case)


def test_scan_report_caps_findings() -> None:
    too_many = [{"cve": f"CVE-2026-{i}"} for i in range(201)]
    found = problems(ScanReport, mutated(d.scan_report(), "vulnerabilities", too_many))
    assert "at most 200" in found["vulnerabilities"]


RESOURCE_CASES: list[tuple[type[BaseModel], Callable[[], dict[str, Any]], Case]] = [
    (Plugin, d.plugin, Case("metadata.name", "Bad_Name", "DNS subdomain")),
    (Plugin, d.plugin, Case("metadata.name", DELETE, REQUIRED)),
    (Plugin, d.plugin, Case("metadata.uid", "abc", None)),
    (Plugin, d.plugin, Case("kind", "Widget", "must be one of")),
    (Plugin, d.plugin, Case("status.phase", "Sleeping", "must be one of")),
    (Plugin, d.plugin, Case("status.phase", "AwaitingApproval", None)),
    (PluginApproval, d.approval, Case("spec.decision", "Maybe", "must be one of")),
    (PluginApproval, d.approval, Case("spec.version", "1.2", "semantic version")),
    (PluginApproval, d.approval, Case("spec.digest", "latest", "ALGORITHM:HEX")),
    (PluginApproval, d.approval, Case("spec.plugin", DELETE, REQUIRED)),
    (PluginApproval, d.approval, Case("spec.approver", {"username": "x"}, None)),
    (PluginPolicy, d.policy, Case("spec.scan.maxSeverity", "SEVERE", "must be one of")),
    (PluginPolicy, d.policy, Case("spec.scan.rescanInterval", "1 day", "Go duration")),
    (
        PluginPolicy,
        d.policy,
        Case(
            "spec.signing.trustedKeys",
            [{"name": "k", "algorithm": "rsa", "publicKey": "x"}],
            "must be one of",
        ),
    ),
    (
        PluginPolicy,
        d.policy,
        Case("spec.approval.requirements", [{"approvers": 17}], "less than or equal to 16"),
    ),
    (PluginPolicy, d.policy, Case("spec.approval.requirements", [{"approvers": 2}], None)),
    (PluginPolicy, d.policy, Case("spec.runtimeClasses.semi-trusted", "gvisor", None)),
]


@pytest.mark.parametrize(
    ("model", "base", "case"), RESOURCE_CASES, ids=lambda value: getattr(value, "path", "")
)
def test_resource_constraint(
    model: type[BaseModel], base: Callable[[], dict[str, Any]], case: Case
) -> None:
    run_case(model, base, case)

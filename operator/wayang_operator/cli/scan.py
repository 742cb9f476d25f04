"""`wayang scan IMAGE_OR_ARCHIVE`: the operator's scan and decision, run locally.

A publisher's CI runs it before applying a Plugin: the same trivy command line, the same report
(capped, secrets without their values) and the same policy decision the operator will reach, so
a plugin that would be refused is refused before it reaches the cluster. The image is an OCI
layout (folder or tar) or a registry reference pinned by digest (`repo@sha256:…`).

Exit codes: 0 the policy passes, 1 it does not (or the scan failed), 2 bad arguments or input.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from ..api.resources import PluginPolicySpec, ScanReportStatus
from ..core.policy import DEFAULT_POLICY_NAME, NamedPolicy
from ..core.scanpolicy import decide
from ..images.oci import ImageError, manifest_digest
from ..manifests.validate import format_path, parse_model
from ..scanning import trivy
from ..scanning.report import Scanned, to_report
from ..settings import OperatorSettings

USAGE = 2


def register(commands: Any) -> None:
    defaults = OperatorSettings.model_fields
    scan = commands.add_parser(
        "scan",
        help="scan an image or archive and show the policy decision",
        description="Scan an OCI layout (folder or tar) or a registry image pinned by digest "
        "with trivy, print the report and the decision a PluginPolicy's scan rules reach.",
    )
    scan.add_argument("image", metavar="IMAGE_OR_ARCHIVE")
    scan.add_argument("--policy", type=Path, help="a PluginPolicy manifest (default: defaults)")
    scan.add_argument("--trivy", default=defaults["trivy"].default, help="trivy binary")
    scan.add_argument(
        "--cache-dir", type=Path, default=defaults["scan_cache_dir"].default, help="trivy cache"
    )
    scan.add_argument("--offline", action="store_true", help="never download the database")
    scan.add_argument("--db-repository", help="mirror of trivy's database")
    scan.add_argument("--timeout", type=float, default=defaults["scan_timeout"].default)
    scan.add_argument("-o", "--output", choices=["text", "json"], default="text")
    scan.set_defaults(handler=run_scan)


def _fail(message: str) -> int:
    print(f"wayang scan: {message}", file=sys.stderr)
    return USAGE


def _policy(path: Path | None) -> NamedPolicy | str:
    """The policy to decide with, or an error message."""
    if path is None:
        return NamedPolicy(DEFAULT_POLICY_NAME, PluginPolicySpec())
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        return f"cannot read {path}: {error}"
    if not isinstance(document, dict) or document.get("kind") != "PluginPolicy":
        return f"{path}: not a PluginPolicy manifest"
    spec, problems = parse_model(PluginPolicySpec, document.get("spec") or {})
    if spec is None:
        where, message = problems[0]
        return f"{path}: spec.{format_path(where)}: {message}"
    return NamedPolicy(str((document.get("metadata") or {}).get("name", path.stem)), spec)


def _target(image: str) -> trivy.Target | str:
    path = Path(image)
    if path.exists():
        try:
            return trivy.Target(str(path), manifest_digest(path), local=True)
        except ImageError as error:
            return str(error)
    if "@" not in image:
        return f"{image}: pin the image by digest (repo@sha256:...), or give an OCI layout"
    return trivy.Target(image, image.rsplit("@", 1)[1])


def _text(target: trivy.Target, scanned: Scanned, status: ScanReportStatus) -> str:
    report = scanned.report
    summary = report.summary
    assert summary is not None
    scanner = report.scanner.version if report.scanner else "?"
    lines = [
        f"{target.reference} ({target.digest})",
        f"  trivy {scanner}, database updated {status.database_updated_at or 'unknown'}",
        f"  vulnerabilities: {summary.total_vulnerabilities} (critical {summary.critical_count}, "
        f"high {summary.high_count}, medium {summary.medium_count}, low {summary.low_count})",
    ]
    for v in report.vulnerabilities or []:
        fix = f"fixed in {v.fixed_version}" if v.fixed_version else "no fix yet"
        lines.append(f"    {v.severity:<8} {v.cve}  {v.package} {v.version}, {fix}")
    lines.append(f"  secrets: {len(report.secrets or [])}")
    lines += [f"    {s.type} in {s.file}:{s.line}" for s in report.secrets or []]
    licenses = ", ".join(item.spdx_id or item.name or "?" for item in report.licenses or [])
    lines.append(f"  licenses: {licenses or 'none found'}")
    if scanned.truncated:
        lines.append(f"  ({scanned.truncated} findings beyond the report's cap are counted only)")
    return "\n".join(lines)


def run_scan(args: argparse.Namespace) -> int:
    policy = _policy(args.policy)
    if isinstance(policy, str):
        return _fail(policy)
    target = _target(args.image)
    if isinstance(target, str):
        return _fail(target)
    options = trivy.TrivyOptions(
        binary=args.trivy,
        cache_dir=args.cache_dir,
        db_repository=args.db_repository,
        offline=args.offline,
        timeout=args.timeout,
    )
    print(f"scanning {args.image} with trivy ...", file=sys.stderr)
    try:
        output = asyncio.run(trivy.scan(options, target))
    except trivy.ScanError as error:
        print(f"wayang scan: {error.kind}: {error.message}", file=sys.stderr)
        return 1
    now = datetime.datetime.now(datetime.UTC)
    version = asyncio.run(trivy.version(options))
    scanned = to_report(
        output,
        plugin_id="(local scan)",
        version="-",
        scanner_version=version,
        now=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    database = trivy.database(args.cache_dir)
    status = ScanReportStatus(
        report=scanned.report,
        fixable=scanned.fixable,
        truncated=scanned.truncated,
        database_updated_at=database.updated_at if database else None,
    )
    facts = decide(status, [policy], now)
    assert facts is not None
    verdict = "PASSED" if facts.passed else "FAILED"
    if args.output == "json":
        document = {
            "image": target.reference,
            "digest": target.digest,
            "report": status.model_dump(mode="json", exclude_none=True, by_alias=True),
            "decision": {"passed": facts.passed, "policy": policy.name, "reason": facts.reason},
        }
        print(json.dumps(document, indent=2))
    else:
        print(_text(target, scanned, status))
        print(f"decision: {verdict}: {facts.reason}")
    return 0 if facts.passed else 1

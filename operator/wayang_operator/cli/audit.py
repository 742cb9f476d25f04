"""`wayang audit …`: verify, read and export the tamper-evident audit log.

The log is read from the cluster (the ConfigMaps in the operator's namespace, via kubeconfig) or
from PostgreSQL (`--postgres DSN`). Verification needs the verifier key: by default the one the
operator published, which an attacker who can edit the log can edit too; so pin it: save
`wayang audit pubkey` once and pass `--vkey FILE`, and keep `wayang audit checkpoint` output to pass
as `--trusted-checkpoint` next time (that catches truncation, rollback and forks).

Exit codes: 0 the log verifies (or the command worked), 1 findings, 2 bad arguments or no log.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..auditlog import note
from ..auditlog.verify import Report, Snapshot, Verifier, verify

USAGE = 2


DEFAULT_NAMESPACE = "default"
"""The operator's namespace when none is given (a standalone operator's default; the chart's is
its release namespace, e.g. wayang-system)."""


def _cluster(parser: argparse.ArgumentParser) -> None:
    """kubectl's flags, here or before `audit` (SUPPRESS: an absent one overrides nothing)."""
    parser.add_argument(
        "-n",
        "--namespace",
        default=argparse.SUPPRESS,
        help=f"the operator's namespace, where the log lives (default: {DEFAULT_NAMESPACE})",
    )
    parser.add_argument("--kubeconfig", default=argparse.SUPPRESS, help="kubeconfig file")
    parser.add_argument("--context", default=argparse.SUPPRESS, help="kubeconfig context")


def _source(parser: argparse.ArgumentParser) -> None:
    _cluster(parser)
    parser.add_argument("--postgres", metavar="DSN", help="read the PostgreSQL store instead")


def _namespace(args: argparse.Namespace) -> str:
    return str(getattr(args, "namespace", None) or DEFAULT_NAMESPACE)


def _connect(args: argparse.Namespace) -> None:
    from ..kube import load_client_configuration  # noqa: PLC0415 - needs the client

    load_client_configuration(getattr(args, "kubeconfig", None), getattr(args, "context", None))


def register(commands: Any) -> None:
    audit = commands.add_parser(
        "audit", help="verify, show and export the audit log", description=__doc__
    )
    sub = audit.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")

    check = sub.add_parser("verify", help="check the log's hashes, order and signed checkpoints")
    _source(check)
    check.add_argument("--vkey", type=Path, help="pinned verifier key (from `audit pubkey`)")
    check.add_argument("--origin", help="expected origin (default: the published one)")
    check.add_argument("--trusted-checkpoint", type=Path, help="a checkpoint saved earlier")
    check.add_argument("-o", "--output", choices=["text", "json"], default="text")
    check.set_defaults(handler=run_verify)

    show = sub.add_parser("show", help="list entries, newest last")
    _source(show)
    show.add_argument("--plugin", help="plugin id or Plugin name")
    show.add_argument("--type", dest="event_type", help="e.g. PLUGIN_APPROVED")
    show.add_argument("--since", help="RFC 3339 time, inclusive")
    show.add_argument("--until", help="RFC 3339 time, exclusive")
    show.add_argument("-f", "--follow", action="store_true", help="keep printing new entries")
    show.set_defaults(handler=run_show)

    export = sub.add_parser("export", help="every record as JSON lines")
    _source(export)
    export.set_defaults(handler=run_export)

    latest = sub.add_parser("checkpoint", help="print the latest signed checkpoint")
    _source(latest)
    latest.set_defaults(handler=run_checkpoint)

    pubkey = sub.add_parser("pubkey", help="print the published verifier key")
    _cluster(pubkey)
    pubkey.set_defaults(handler=run_pubkey)

    init = sub.add_parser("postgres-init", help="create the PostgreSQL schema and writer role")
    init.add_argument("--dsn", required=True, help="an administrator's connection string")
    init.add_argument("--role", default="wayang_audit", help="the operator's role")
    init.set_defaults(handler=run_postgres_init)


def _fail(message: str) -> int:
    print(f"wayang audit: {message}", file=sys.stderr)
    return USAGE


async def _snapshot(args: argparse.Namespace) -> Snapshot:
    if args.postgres:
        from ..auditlog.postgres import snapshot as pg_snapshot  # noqa: PLC0415 - optional

        return await pg_snapshot(args.postgres)
    from ..auditlog.configmaps import snapshot  # noqa: PLC0415 - needs the client
    from ..kube import KubeApi  # noqa: PLC0415

    _connect(args)
    return await snapshot(KubeApi(), _namespace(args))


async def _published(args: argparse.Namespace) -> tuple[str, str] | None:
    from ..auditlog.configmaps import published_verifier  # noqa: PLC0415
    from ..kube import KubeApi  # noqa: PLC0415

    _connect(args)
    return await published_verifier(KubeApi(), _namespace(args))


def _verifier(args: argparse.Namespace) -> Verifier | str:
    published = None
    if not (args.vkey and args.origin):  # else no cluster is needed (PostgreSQL, offline copies)
        published = asyncio.run(_published(args))
    vkey = args.vkey.read_text().strip() if args.vkey else (published[0] if published else None)
    origin = args.origin or (published[1] if published else None)
    if vkey is None or origin is None:
        return "no verifier key: pass --vkey and --origin, or run against the operator's cluster"
    if args.vkey and published and published[0] != vkey:
        print(
            "wayang audit: warning: the published verifier key differs from --vkey "
            "(the pinned key is used)",
            file=sys.stderr,
        )
    name, key = note.parse_vkey(vkey)
    return Verifier(name, key, origin)


def _print_report(report: Report, source: str, started: float) -> None:
    checkpoint = report.checkpoint
    signed = (
        f"checkpoint of {checkpoint.size} signed for {checkpoint.origin}"
        if checkpoint
        else "no checkpoint"
    )
    print(f"{source}: {report.size} entries, {signed} ({time.monotonic() - started:.2f}s)")
    for finding in report.findings:
        where = f" at entry {finding.index}" if finding.index is not None else ""
        print(f"FAIL {finding.kind}{where}: {finding.message}")
    if report.ok:
        print("OK: every entry matches its hash and the signed checkpoint")
    elif report.first_bad_index is not None:
        print(f"first bad index: {report.first_bad_index}")


def run_verify(args: argparse.Namespace) -> int:
    try:
        verifier = _verifier(args)
        if isinstance(verifier, str):
            return _fail(verifier)
        trusted = args.trusted_checkpoint.read_text() if args.trusted_checkpoint else None
        started = time.monotonic()
        snapshot = asyncio.run(_snapshot(args))
    except (OSError, ValueError) as error:
        return _fail(str(error))
    report = verify(snapshot, verifier, trusted)
    source = (
        f"postgres {args.postgres.split()[0]}"
        if args.postgres
        else f"ConfigMaps in {_namespace(args)}"
    )
    if args.output == "json":
        document = {
            "ok": report.ok,
            "entries": report.size,
            "firstBadIndex": report.first_bad_index,
            "findings": [
                {"kind": f.kind.value, "index": f.index, "message": f.message}
                for f in report.findings
            ],
        }
        print(json.dumps(document, indent=2))
    else:
        _print_report(report, source, started)
    return 0 if report.ok else 1


def _matches(args: argparse.Namespace) -> Callable[[Mapping[str, Any]], bool]:
    def match(entry: Mapping[str, Any]) -> bool:
        details = entry.get("details") or {}
        if args.plugin and args.plugin not in (entry.get("pluginId"), details.get("plugin")):
            return False
        if args.event_type and entry.get("eventType") != args.event_type:
            return False
        stamp = str(entry.get("timestamp", ""))
        return not (args.since and stamp < args.since) and not (args.until and stamp >= args.until)

    return match


def _line(record: Mapping[str, Any]) -> str:
    entry = record["entry"]
    actor = entry.get("actor") or {}
    details = entry.get("details") or {}
    where = f"{entry.get('tenantId', '-')}/{details.get('plugin', entry.get('pluginId'))}"
    return (
        f"{record['i']:>7}  {entry.get('timestamp', '')[:19]}  {entry.get('eventType', ''):<18} "
        f"{where:<40} {actor.get('id', '')}: {details.get('message', '')}"
    )


def run_show(args: argparse.Namespace) -> int:
    match, shown = _matches(args), 0
    try:
        while True:
            records = list(asyncio.run(_snapshot(args)).records)
            for record in records[shown:]:
                if match(record["entry"]):
                    print(_line(record), flush=True)
            shown = len(records)
            if not args.follow:
                return 0
            time.sleep(2)
    except (OSError, ValueError) as error:
        return _fail(str(error))


def run_export(args: argparse.Namespace) -> int:
    try:
        snapshot = asyncio.run(_snapshot(args))
    except (OSError, ValueError) as error:
        return _fail(str(error))
    for record in snapshot.records:
        sys.stdout.write(json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n")
    return 0


def run_checkpoint(args: argparse.Namespace) -> int:
    snapshot = asyncio.run(_snapshot(args))
    if snapshot.checkpoint is None:
        return _fail("the log has no checkpoint yet")
    sys.stdout.write(snapshot.checkpoint)
    return 0


def run_pubkey(args: argparse.Namespace) -> int:
    published = asyncio.run(_published(args))
    if published is None:
        return _fail(f"no published verifier key in {_namespace(args)} (is the operator running?)")
    print(published[0])
    print(f"# origin: {published[1]}", file=sys.stderr)
    return 0


def run_postgres_init(args: argparse.Namespace) -> int:
    from ..auditlog.postgres import initialize  # noqa: PLC0415

    asyncio.run(initialize(args.dsn, args.role))
    print(f"schema ready; role {args.role} may INSERT and SELECT only", file=sys.stderr)
    return 0

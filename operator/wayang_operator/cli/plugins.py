"""`kubectl wayang get | explain | approve | reject | revoke`: Plugins in a cluster, for people.

kubectl hands a plugin no flags, so these take kubectl's own: `--kubeconfig`, `--context`,
`-n/--namespace` (default: the context's namespace) and, for `get`, `-A/--all-namespaces`,
honouring $KUBECONFIG the way kubectl does (kube.load_client_configuration).

`approve`, `reject` and `revoke` create a PluginApproval for the plugin's exact current id,
version and digest, read from the live Plugin: what was reviewed is what is approved. With
`--digest` (the digest the reviewer looked at) a plugin whose digest changed since is refused,
naming both digests: a swap between review and approval cannot slip through. The approver is
never sent: the admission webhook stamps the requester's identity, and refuses a publisher's
approval of their own plugin where a policy forbids it. A revocation is a PluginApproval with
decision Revoke (the operator withdraws every approval of the digest while it exists), not a
deletion of approvals. Approvals are named `<plugin>-<decision>-<digest 8>-<random>` by
generateName, since several approvers approve the same digest and an approval is immutable.

Exit codes: 0 done, 1 refused or not found (or `--wait` did not end well), 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..api.descriptor import PluginDescriptor
from ..api.meta import API_VERSION
from ..api.resources import (
    ApprovalPhase,
    ApprovedSurface,
    ConditionType,
    Decision,
    PluginPhase,
    PluginPolicySpec,
    report_name,
)
from ..core import signing, surface
from ..core.explain import (
    PLUGIN_LABEL,
    Explanation,
    StepState,
    explain,
    short_digest,
)
from ..core.gates import Reason
from ..core.policy import NamedPolicy, applicable
from ..manifests.validate import parse_model
from . import render

FAILED = 1
USAGE = 2
PLUGINS = "plugins"
APPROVALS = "pluginapprovals"
SCANS = "scanreports"
POLL = 0.5
PATIENCE = 10.0
"""Seconds after which --wait judges the plugin without the approval's phase (see verdict)."""


class RefusedError(Exception):
    """What the command reports instead of a traceback: the cluster's or our own refusal."""


def _cluster_options(parser: argparse.ArgumentParser, *, suppress: bool = True) -> None:
    """kubectl's connection flags; SUPPRESS keeps a subcommand's absent flag from overwriting
    one given before the subcommand (`kubectl wayang -n team-a get`)."""
    default = argparse.SUPPRESS if suppress else None
    group = parser.add_argument_group("cluster (as kubectl)")
    group.add_argument("--kubeconfig", default=default, help="kubeconfig file (or $KUBECONFIG)")
    group.add_argument("--context", default=default, help="kubeconfig context to use")
    group.add_argument(
        "-n", "--namespace", default=default, help="namespace (default: the context's)"
    )


def add_global_options(parser: argparse.ArgumentParser) -> None:
    """The connection flags before the subcommand, too, as people type them either way."""
    _cluster_options(parser)


def register(commands: Any) -> None:
    get = commands.add_parser(
        "get",
        help="list Plugins with phase, readiness and the first failing gate's reason",
        description="List Plugins as a table (NAMESPACE with -A), or as a List with -o json|yaml.",
    )
    get.add_argument("names", nargs="*", metavar="NAME", help="only these Plugins")
    get.add_argument(
        "-A", "--all-namespaces", action="store_true", help="list Plugins in every namespace"
    )
    get.add_argument("-o", "--output", choices=("table", "wide", "json", "yaml"), default="table")
    _cluster_options(get)
    get.set_defaults(handler=run_get)

    why = commands.add_parser(
        "explain",
        help="why a Plugin is not running, gate by gate, and what would unblock it",
        description="Walk a Plugin's conditions in gate order and say, in words, what each "
        "means and what would unblock it (reads its PluginApprovals and ScanReport too).",
    )
    why.add_argument("plugin", metavar="PLUGIN")
    why.add_argument("-o", "--output", choices=("text", "json", "yaml"), default="text")
    _cluster_options(why)
    why.set_defaults(handler=run_explain)

    for decision, verb, text in (
        (Decision.APPROVE, "approve", "approve a Plugin's current artifact (id, version, digest)"),
        (Decision.REJECT, "reject", "reject a Plugin's current artifact"),
        (Decision.REVOKE, "revoke", "revoke a Plugin's current artifact: unload it"),
    ):
        command = commands.add_parser(
            verb,
            help=text,
            description=f"Create a PluginApproval with decision {decision.value} for the exact "
            "id, version, digest and powers (the approved surface) the live Plugin has now; the "
            "powers are shown first. Your identity is stamped by the admission webhook. With "
            "--sign, print a signed manifest to commit to Git instead (GitOps: Argo CD creates "
            "it, and the signature says who approved).",
        )
        command.add_argument("plugin", metavar="PLUGIN")
        command.add_argument("--reason", required=True, help="why (kept in the audit log)")
        command.add_argument(
            "--digest",
            help="the digest you reviewed: refused if the Plugin's digest differs",
        )
        command.add_argument(
            "--sign",
            type=Path,
            metavar="KEY",
            help="an approver's private key (wayang keygen): print the signed PluginApproval "
            "for Git instead of creating it",
        )
        command.add_argument(
            "--key-name", help="the key's name in the policy's approverKeys (default: file stem)"
        )
        command.add_argument(
            "--wait", action="store_true", help="wait until the plugin reacts (progress on stderr)"
        )
        command.add_argument("--timeout", type=float, default=120.0, help="seconds for --wait")
        command.add_argument("-o", "--output", choices=("text", "json", "yaml"), default="text")
        _cluster_options(command)
        command.set_defaults(handler=run_decide, decision=decision)


# --------------------------------------------------------------------------------------------
# Cluster access (all through kube.py)


class Session:
    """The API, and the namespace a command means when none is given."""

    def __init__(self, args: argparse.Namespace) -> None:
        from ..kube import KubeApi, load_client_configuration  # noqa: PLC0415 - lazy client

        self.context = getattr(args, "context", None)
        self.default_namespace = load_client_configuration(
            getattr(args, "kubeconfig", None), self.context
        )
        self.namespace: str = getattr(args, "namespace", None) or self.default_namespace
        self.api = KubeApi()


@contextlib.contextmanager
def _doing(verb: str, resource: str, namespace: str | None) -> Iterator[None]:
    """Turn the client's errors into one sentence that names what was attempted: 403 says
    which verb on which resource, an unreachable server says where it was looked for."""
    from ..kube import cluster_error  # noqa: PLC0415 - lazy client

    try:
        yield
    except RefusedError:
        raise
    except Exception as error:
        known = cluster_error(error)
        if known is None:
            raise
        where = f" in namespace {namespace}" if namespace else " in any namespace"
        if known.status is None:
            raise RefusedError(known.message) from error
        if known.status == 404 and verb == "list":
            raise RefusedError(
                f"the API server has no {resource}.wayang.io: are the CRDs installed? "
                "(kubectl apply -f crds/)"
            ) from error
        raise RefusedError(f"cannot {verb} {resource}{where}: {known.message}") from error


async def _get(session: Session, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
    with _doing("get", plural, namespace):
        return await session.api.get(plural, namespace, name)


async def _plugin(session: Session, namespace: str, name: str) -> dict[str, Any]:
    found = await _get(session, PLUGINS, namespace, name)
    if found is None:
        raise RefusedError(f'Plugin "{name}" not found in namespace {namespace}')
    return found


def _run(args: argparse.Namespace, command: Callable[[Session], Awaitable[int]]) -> int:
    try:
        return asyncio.run(_connected(args, command))
    except RefusedError as refusal:
        print(f"kubectl wayang: error: {refusal}", file=sys.stderr)
        return FAILED


async def _connected(args: argparse.Namespace, command: Callable[[Session], Awaitable[int]]) -> int:
    from ..kube import ClusterError  # noqa: PLC0415 - lazy client

    try:
        session = Session(args)
    except ClusterError as error:
        raise RefusedError(error.message) from error
    return await command(session)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# --------------------------------------------------------------------------------------------
# get


def run_get(args: argparse.Namespace) -> int:
    async def command(session: Session) -> int:
        namespace = None if args.all_namespaces else session.namespace
        with _doing("list", PLUGINS, namespace):
            plugins = await session.api.list_objects(PLUGINS, namespace)
        if args.names:
            wanted = set(args.names)
            plugins = [p for p in plugins if (p.get("metadata") or {}).get("name") in wanted]
            found = {(p.get("metadata") or {}).get("name") for p in plugins}
            for name in args.names:
                if name not in found:
                    where = f" in namespace {namespace}" if namespace else ""
                    print(f'Plugin "{name}" not found{where}', file=sys.stderr)
            if not plugins:
                return FAILED
        if args.output in ("json", "yaml"):
            sys.stdout.write(render.dump(render.as_list(plugins), args.output))
            return 0
        if not plugins:
            where = f" in {namespace} namespace" if namespace else ""
            print(f"No plugins found{where}.", file=sys.stderr)
            return 0
        table = render.plugin_table(
            plugins,
            now=_now(),
            all_namespaces=namespace is None,
            wide=args.output == "wide",
            colour=render.use_colour(sys.stdout),
        )
        sys.stdout.write(table)
        return 0

    return _run(args, command)


# --------------------------------------------------------------------------------------------
# explain


async def _explained(session: Session, namespace: str, name: str) -> Explanation:
    """The plugin and what explains it; approvals and the scan report are optional reading
    (a publisher may not list approvals in every namespace: then explain says less)."""
    plugin = await _plugin(session, namespace, name)
    approvals: list[dict[str, Any]] = []
    scan: dict[str, Any] | None = None
    try:
        with _doing("list", APPROVALS, namespace):
            approvals = await session.api.list_objects(APPROVALS, namespace)
    except RefusedError as refusal:
        print(f"kubectl wayang: note: {refusal}", file=sys.stderr)
    digest = ((plugin.get("spec") or {}).get("implementation") or {}).get("digest")
    if isinstance(digest, str) and digest:
        try:
            scan = await _get(session, SCANS, namespace, report_name(digest))
        except RefusedError as refusal:
            print(f"kubectl wayang: note: {refusal}", file=sys.stderr)
    return explain(plugin, approvals, scan, now=_now())


def run_explain(args: argparse.Namespace) -> int:
    async def command(session: Session) -> int:
        explanation = await _explained(session, session.namespace, args.plugin)
        if args.output == "text":
            colour = render.use_colour(sys.stdout)
            sys.stdout.write(render.explanation_text(explanation, colour=colour))
        else:
            sys.stdout.write(render.dump(explanation.to_dict(), args.output))
        return 0

    return _run(args, command)


# --------------------------------------------------------------------------------------------
# approve, reject, revoke


def approval_body(
    plugin: Mapping[str, Any],
    decision: Decision,
    reason: str,
    reviewed: str | None,
    surface_digest: str | None = None,
) -> dict[str, Any]:
    """The PluginApproval for the plugin's exact current artifact and powers; `reviewed`
    (--digest) must be that artifact's digest, else the approval is refused before it is sent;
    `surface_digest` is the surface shown to the approver (the webhook refuses the approval if
    the Plugin's powers changed meanwhile)."""
    meta = plugin.get("metadata") or {}
    spec = plugin.get("spec") or {}
    name = str(meta.get("name", ""))
    digest = (spec.get("implementation") or {}).get("digest")
    if not isinstance(digest, str) or not digest or not spec.get("id") or not spec.get("version"):
        raise RefusedError(
            f"Plugin {name} has no id, version and digest to decide on (is it valid?)"
        )
    if reviewed is not None and reviewed != digest:
        raise RefusedError(
            f"refusing to {decision.value.lower()} Plugin {name}: you reviewed digest "
            f"{reviewed} but the Plugin now has digest {digest} (version {spec['version']}); "
            "the artifact changed since the review: review the new digest, then pass it"
        )
    hexdigits = digest.partition(":")[2][:8]
    stem = f"{name[:200]}-{decision.value.lower()}-{hexdigits}-"
    return {
        "apiVersion": API_VERSION,
        "kind": "PluginApproval",
        "metadata": {
            "generateName": stem,
            "labels": {PLUGIN_LABEL: name[:63].rstrip("-.")},
        },
        "spec": {
            "plugin": name,
            "pluginId": spec["id"],
            "version": spec["version"],
            "digest": digest,
            "decision": decision.value,
            "reason": reason,
            **({"surfaceDigest": surface_digest} if surface_digest else {}),
        },
    }


async def _powers(
    session: Session, namespace: str, plugin: Mapping[str, Any]
) -> tuple[ApprovedSurface | None, bool]:
    """The live Plugin's approved surface under the policies of its namespace (they decide
    whether configuration is part of it), None when its spec does not validate; and whether
    the policies could be read (else the webhook computes the surface's digest itself)."""
    descriptor = parse_model(PluginDescriptor, dict(plugin.get("spec") or {}))[0]
    if descriptor is None:
        return None, False
    try:
        with _doing("list", "pluginpolicies", None):
            bodies = await session.api.list_objects("pluginpolicies", None)
        with _doing("get", "namespaces", None):
            labels = await session.api.namespace_labels(namespace)
    except RefusedError as error:
        print(f"(policies not readable: {error}; the webhook checks the powers)", file=sys.stderr)
        return surface.surface_of(descriptor), False
    named = []
    for body in bodies:
        spec = parse_model(PluginPolicySpec, dict(body.get("spec") or {}))[0]
        if spec is not None:
            named.append(NamedPolicy(str((body.get("metadata") or {}).get("name", "")), spec))
    policies = applicable(named, labels)
    bind = any(policy.approval.bind_configuration for policy in policies)
    return surface.surface_of(descriptor, bind_configuration=bind), True


def signed_manifest(
    body: dict[str, Any], namespace: str, key_path: Path, key_name: str | None
) -> dict[str, Any]:
    """The approval as a manifest for Git: a fixed name, the namespace, and the approver's
    signature over what it decides (core/signing.ApprovalFields)."""
    key = signing.load_private(key_path.read_bytes())
    name = key_name or key_path.stem
    spec = body["spec"]
    fields = signing.ApprovalFields(
        namespace=namespace,
        plugin=spec["plugin"],
        plugin_id=spec["pluginId"],
        version=spec["version"],
        digest=spec["digest"],
        surface_digest=spec.get("surfaceDigest", ""),
        decision=spec["decision"],
        reason=spec.get("reason") or "",
    )
    meta = dict(body["metadata"])
    stem = str(meta.pop("generateName"))
    meta["name"] = f"{stem}{name}"[:253].rstrip("-.")
    meta["namespace"] = namespace
    return {
        **body,
        "metadata": meta,
        "spec": {**spec, "signature": signing.sign_bytes(fields.payload(), key, name)},
    }


def run_decide(args: argparse.Namespace) -> int:
    decision: Decision = args.decision

    async def command(session: Session) -> int:
        namespace = session.namespace
        plugin = await _plugin(session, namespace, args.plugin)
        powers, known = await _powers(session, namespace, plugin)
        digest = surface.digest(powers) if powers is not None and known else None
        body = approval_body(plugin, decision, args.reason, args.digest, digest)
        if powers is not None:
            print(
                f"{decision.value} of Plugin {args.plugin} in {namespace}, these powers"
                + (f" (approved surface {short_digest(digest)}):" if digest else ":"),
                file=sys.stderr,
            )
            for line in surface.describe(powers):
                print(f"  {line}", file=sys.stderr)
        if args.sign is not None:
            try:
                manifest = signed_manifest(body, namespace, args.sign, args.key_name)
            except (OSError, ValueError) as error:
                raise RefusedError(f"cannot sign with {args.sign}: {error}") from error
            output = "yaml" if args.output == "text" else args.output
            sys.stdout.write(render.dump(manifest, output))
            print(
                "# commit this manifest; Argo CD creates it, and the signature says who approved",
                file=sys.stderr,
            )
            return 0
        with _doing("create", APPROVALS, namespace):
            created = await session.api.create_new(APPROVALS, namespace, body)
        name = str(created["metadata"]["name"])
        spec = body["spec"]
        if args.output == "text":
            print(
                f"pluginapproval.wayang.io/{name} created: {decision.value} of Plugin "
                f"{args.plugin} version {spec['version']}, digest {short_digest(spec['digest'])}"
            )
        else:
            sys.stdout.write(render.dump(created, args.output))
        sys.stdout.flush()  # before --wait's progress on stderr, also in a pipe
        if not args.wait:
            return 0
        return await _wait(
            session,
            namespace=namespace,
            plugin=args.plugin,
            approval=name,
            decision=decision,
            timeout=args.timeout,
        )

    return _run(args, command)


def _progress(started: float, text: str) -> None:
    print(f"[{time.monotonic() - started:5.1f}s] {text}", file=sys.stderr, flush=True)


def verdict(
    explanation: Explanation,
    approval: Mapping[str, Any],
    decision: Decision,
    *,
    patient: bool = False,
) -> tuple[bool, str] | None:
    """Whether waiting is over: (succeeded, why), or None to keep waiting. The approval's own
    phase comes first (a Stale or Ignored one never counts): the operator writes it right
    after the plugin's status, so once it is there the plugin's gates include it. An approval
    that changes nothing (the same user approving twice) gets no phase at all: after a while
    (`patient`) the plugin alone is judged."""
    status = approval.get("status") or {}
    phase = status.get("phase")
    if phase in (ApprovalPhase.STALE.value, ApprovalPhase.IGNORED.value):
        return False, f"the approval is {phase}: {status.get('message')}"
    if phase != ApprovalPhase.IN_FORCE.value and not patient:
        return None  # the operator has not evaluated it yet
    steps = {step.gate: step for step in explanation.steps}
    approved = steps.get(ConditionType.APPROVED.value)
    observed = steps.get("Observed")
    if approved is None or observed is None or observed.state is not StepState.PASSED:
        return None
    if decision is Decision.REVOKE:
        workload = steps.get(ConditionType.WORKLOAD_AVAILABLE.value)
        unloaded = workload is None or workload.reason in (Reason.UNLOADED, Reason.NOT_MANAGED)
        if explanation.phase == PluginPhase.REVOKED.value and unloaded:
            return True, "revoked; nothing runs"
        return None
    if decision is Decision.REJECT:
        if approved.reason in (Reason.REJECTED, Reason.REVOKED):
            return True, approved.message
        return None
    if explanation.ready:
        return True, "Ready"
    if approved.state is not StepState.PASSED:
        if approved.reason == Reason.AWAITING_APPROVAL:
            return True, f"your approval is in force; the plugin still waits: {approved.detail}"
        return False, approved.message
    first = next(iter(explanation.blocking), None)
    if first is not None and first.state is StepState.BLOCKED:
        return False, f"approved, but {first.gate} blocks it: {first.message}"
    return None


async def _wait(
    session: Session,
    *,
    namespace: str,
    plugin: str,
    approval: str,
    decision: Decision,
    timeout: float,
) -> int:
    started = time.monotonic()
    shown: tuple[Any, ...] = ()
    _progress(started, f"waiting for Plugin {plugin} in {namespace} to react to {approval}")
    while True:
        record = await _get(session, APPROVALS, namespace, approval) or {}
        explanation = await _explained(session, namespace, plugin)
        current = (
            (record.get("status") or {}).get("phase"),
            explanation.phase,
            tuple(step.reason for step in explanation.blocking),
        )
        if current != shown:
            shown = current
            first = next(iter(explanation.blocking), None)
            why = f" ({first.gate}: {first.reason})" if first else ""
            _progress(
                started, f"approval {current[0] or 'not evaluated yet'}, plugin {current[1]}{why}"
            )
        patient = time.monotonic() - started > PATIENCE
        outcome = verdict(explanation, record, decision, patient=patient)
        if outcome is not None:
            succeeded, why = outcome
            _progress(started, ("done: " if succeeded else "failed: ") + why)
            return 0 if succeeded else FAILED
        if time.monotonic() - started > timeout:
            _progress(started, f"timed out after {timeout:.0f}s: {explanation.summary}")
            return FAILED
        await asyncio.sleep(POLL)

"""`make chaos`: faults injected into a governance rollout on a control plane of its own, seeded
so that a run can be repeated (`--seed`), with two operator replicas sharing one Lease and one
audit log (ConfigMap store).

Every scenario plays the same rollout in a namespace of its own: N plugins published, each
approved, a fifth of them upgraded (a new version and digest) and approved again, a tenth deleted;
each step waits until the cluster shows it before the next. The first scenario, `control`, runs
it without faults: its audit entries per plugin are the expected sequence, and its time the
same-run baseline. Then, with faults while the rollout runs:

- `leader-kill`: kill -9 the Lease holder at K random moments (restarting it at once, so a
  standby is always there);
- `leader-stop`: SIGSTOP the holder past its Lease (three durations) and resume it, twice:
  the old holder must not write once it lost the Lease (no status, no audit entry, no Event);
  its log (DEBUG, every API request) is read for writes between its resume and its next lead;
- `apiserver-restart`, `etcd-restart`: the process stopped and started again mid-flow, twice.

After each: every plugin in the state its inputs decide (Ready at its last approved version, or
gone), `wayang audit verify` passes, and the audit entries of each plugin are compared with the
control's: an expected entry missing is lost, one more than expected is duplicated. The last line
reads `chaos: N scenarios, lost L, duplicated D, max converge S s`; exit 1 if anything was lost,
duplicated, written by a deposed leader, or did not converge.

Not covered yet (the README's status table says so): scans and workloads in the rollout (the
replicas run governance only), a kill during a workload rollout.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from e2e.conftest import CRDS, Kube
from e2e.flow import approval_document, plugin, tenant_of
from e2e.localcluster import cluster as local
from e2e.operator_process import Operator, audit_export, running

SCENARIOS = ("control", "leader-kill", "leader-stop", "apiserver-restart", "etcd-restart")
SMOKE = ("control", "leader-kill", "apiserver-restart")
"""What CI runs (`make chaos-smoke`, smaller): the scenarios whose checks cannot be fooled by
timing. `leader-stop` is left out: a request in flight at the stop is answered at the resume
and would read as a deposed leader's write."""
LEASE = 6
"""Lease duration (s): short, so that takeovers happen many times in one run."""
CONVERGE_TIMEOUT = 600.0
CLIENT = "urllib3.connectionpool"
"""The logger of the Kubernetes client's requests."""
WRITES = re.compile(r'"(POST|PUT|PATCH|DELETE) (/[^ ]+) HTTP/1\.1" (\d{3})')
"""A request the Kubernetes client logged at DEBUG (urllib3), with its answer's status."""


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Stage:
    """The cluster, the two replicas and the audit log every scenario shares."""

    kube: Kube
    layout: local.Layout
    replicas: list[Operator]
    audit_namespace: str
    lease: str
    kills: int = 20
    """How many times `leader-kill` kills the holder."""
    baseline: float = 0.0
    """The control's duration (s): the faults of a scenario are spread over it."""

    def leader(self) -> Operator | None:
        found = self.kube.run(
            "get", "lease", self.lease, "-n", "default", "-o", "json", check=False
        )
        if found.returncode != 0:
            return None
        holder = json.loads(found.stdout)["spec"].get("holderIdentity") or ""
        for replica in self.replicas:
            process = replica.process
            if process and process.poll() is None and f"-{process.pid}-" in holder:
                return replica
        return None


@dataclass
class Outcome:
    name: str
    faults: int = 0
    planned: int = 0
    seconds: float = 0.0
    converge: float = 0.0
    lost: int = 0
    duplicated: int = 0
    deposed_writes: list[str] = field(default_factory=list)
    resumed: list[tuple[Operator, datetime.datetime]] = field(default_factory=list)
    """Each stopped replica and when it was resumed: its log is read for writes at the end."""
    last_fault: float | None = None
    """When the last fault was made (monotonic): the time to converge is counted from it."""
    verified: bool = False
    converged: bool = False
    entries: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (
            self.converged
            and self.verified
            and self.faults == self.planned
            and not (self.lost or self.duplicated or self.deposed_writes)
        )


def retried(kube: Kube, *args: str, user: str | None = None, stdin: str | None = None) -> None:
    """A kubectl write, repeated until the API server and a webhook answer it (both may be down
    for a moment in these scenarios); every write here is idempotent."""
    deadline = time.monotonic() + CONVERGE_TIMEOUT
    while True:
        result = kube.run(*args, user=user, stdin=stdin, check=False)
        if result.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"kubectl {' '.join(args)} kept failing: {result.stderr}")
        time.sleep(0.5)


def states(kube: Kube, namespace: str) -> dict[str, tuple[str, str]]:
    """Each Plugin's (phase, version); {} while the API server does not answer."""
    found = kube.run("get", "plugins", "-n", namespace, "-o", "json", check=False)
    if found.returncode != 0:
        return {}
    return {
        item["metadata"]["name"]: (
            (item.get("status") or {}).get("phase", ""),
            item["spec"]["version"],
        )
        for item in json.loads(found.stdout)["items"]
    }


def wait_for(kube: Kube, namespace: str, wanted: dict[str, tuple[str, str]]) -> None:
    deadline = time.monotonic() + CONVERGE_TIMEOUT
    while (seen := states(kube, namespace)) != wanted:
        if time.monotonic() > deadline:
            off = {k: (seen.get(k), v) for k, v in wanted.items() if seen.get(k) != v}
            extra = sorted(set(seen) - set(wanted))
            raise TimeoutError(f"not converged: {dict(list(off.items())[:5])} extra {extra[:5]}")
        time.sleep(0.5)


def documents(names: list[str], version: str) -> list[dict[str, Any]]:
    found = []
    for name in names:
        document = plugin(name, version=version)
        digest = hashlib.sha256(f"{name}/{version}".encode()).hexdigest()
        document["spec"]["implementation"]["digest"] = f"sha256:{digest}"
        found.append(document)
    return found


def approvals(plugins: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(
        approval_document(
            p["metadata"]["name"],
            p["spec"],
            f"{p['metadata']['name']}-{p['spec']['version'].replace('.', '-')}",
        )
        for p in plugins
    )


def rollout(
    kube: Kube, namespace: str, count: int, rng: random.Random
) -> dict[str, tuple[str, str]]:
    """Publish, approve, upgrade a fifth and approve it, delete a tenth; each step seen. The
    state the inputs decide, which the cluster shows at the end."""
    names = [f"p{index:04d}" for index in range(count)]
    first = documents(names, "1.0.0")
    retried(kube, "apply", "-n", namespace, "-f", "-", user="publisher-1",
            stdin=yaml.safe_dump_all(first))  # fmt: skip
    wait_for(kube, namespace, dict.fromkeys(names, ("AwaitingApproval", "1.0.0")))
    retried(kube, "apply", "-n", namespace, "-f", "-", user="approver-1", stdin=approvals(first))
    wanted = dict.fromkeys(names, ("Ready", "1.0.0"))
    wait_for(kube, namespace, wanted)
    upgraded = sorted(rng.sample(names, count // 5))
    second = documents(upgraded, "1.1.0")
    retried(kube, "apply", "-n", namespace, "-f", "-", user="publisher-1",
            stdin=yaml.safe_dump_all(second))  # fmt: skip
    wanted |= dict.fromkeys(upgraded, ("AwaitingApproval", "1.1.0"))
    wait_for(kube, namespace, wanted)
    retried(kube, "apply", "-n", namespace, "-f", "-", user="approver-1", stdin=approvals(second))
    wanted |= dict.fromkeys(upgraded, ("Ready", "1.1.0"))
    wait_for(kube, namespace, wanted)
    deleted = sorted(rng.sample(names, count // 10))
    retried(kube, "delete", "plugins", "-n", namespace, "--ignore-not-found", "--wait=false",
            *deleted, user="publisher-1")  # fmt: skip
    for name in deleted:
        wanted.pop(name)
    wait_for(kube, namespace, wanted)
    return wanted


# --------------------------------------------------------------------------------------------
# Faults: each scenario makes its faults at random moments within the control's duration (the
# rollout under faults takes longer, so every one lands mid-flow), one after the other.


def kill_leader(stage: Stage, leader: Operator, out: Outcome) -> None:
    leader.kill()
    leader.start()


def stop_leader(stage: Stage, leader: Operator, out: Outcome) -> None:
    assert leader.process is not None
    pid = leader.process.pid
    os.killpg(pid, signal.SIGSTOP)
    time.sleep(LEASE * 3)
    out.resumed.append((leader, datetime.datetime.now(datetime.UTC)))
    os.killpg(pid, signal.SIGCONT)


def restart(name: str) -> Callable[[Stage, Operator, Outcome], None]:
    def action(stage: Stage, leader: Operator, out: Outcome) -> None:
        local.restart(stage.layout, name, crash=out.faults % 2 == 0)  # a crash, then a stop
        api_answers(stage.kube)

    return action


@dataclass(frozen=True)
class Fault:
    count: Callable[[Stage], int]
    action: Callable[[Stage, Operator, Outcome], None]


FAULTS = {
    "leader-kill": Fault(lambda stage: stage.kills, kill_leader),
    "leader-stop": Fault(lambda stage: 2, stop_leader),
    "apiserver-restart": Fault(lambda stage: 2, restart("kube-apiserver")),
    "etcd-restart": Fault(lambda stage: 2, restart("etcd")),
}


def inject(
    stage: Stage, fault: Fault, rng: random.Random, done: threading.Event, out: Outcome
) -> None:
    """Make the scenario's faults at their moments (seconds from the start, drawn from `rng`
    within the control's duration) until the rollout is done; each at the Lease holder of that
    moment."""
    started = time.monotonic()
    out.planned = fault.count(stage)
    moments = sorted(rng.uniform(0.5, max(stage.baseline, 1.0)) for _ in range(out.planned))
    for moment in moments:
        if done.wait(max(0.0, started + moment - time.monotonic())):
            return
        while (leader := stage.leader()) is None:  # a takeover under way: the next holder
            if done.wait(0.2):
                return
        fault.action(stage, leader, out)
        out.faults += 1
        out.last_fault = time.monotonic()


def api_answers(kube: Kube, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while kube.run("get", "--raw", "/readyz", check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError("the API server did not come back")
        time.sleep(0.3)


def writes_after(replica: Operator, resumed: datetime.datetime) -> list[str]:
    """Writes the replica's log shows the API server accepted after `resumed` and before the
    replica led again, other than its attempts at the Lease: each one is a deposed leader
    writing. (A request sent just before the stop is answered, and logged, at the resume: that
    one would count too, so a clean run is the stronger evidence.)"""
    found = []
    for line in replica.log(replica.runs).read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            stamp = datetime.datetime.fromisoformat(record["time"].replace("Z", "+00:00"))
            if stamp <= resumed:
                continue
            message = str(record.get("message", ""))
            if message.startswith("leading:"):
                break
            # requests it sent (not the admission reviews it answers, which stay its job)
            request = WRITES.search(message) if record.get("logger") == CLIENT else None
            # a write the API server refused (409: its precondition failed) was fenced off
            if request and "/leases/" not in request.group(2) and request.group(3) < "300":
                found.append(f"{record['time']} {request.group(1)} {request.group(2)}")
            if message.startswith("Patching with"):
                found.append(f"{record['time']} kopf {message[:120]}")
    return found


# --------------------------------------------------------------------------------------------


def audit_of(stage: Stage, namespace: str) -> dict[str, list[tuple[str, str, str]]]:
    entries: dict[str, list[tuple[str, str, str]]] = collections.defaultdict(list)
    for entry in audit_export(stage.kube, stage.audit_namespace):
        if entry.get("tenantId") == namespace:
            key = (entry["eventType"], entry["actor"]["id"], entry.get("version") or "")
            entries[entry["details"]["plugin"]].append(key)
    return dict(entries)


def verified(stage: Stage) -> bool:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "wayang"), "audit", "verify",
         "-n", stage.audit_namespace],
        capture_output=True, text=True, check=False,
        env={**os.environ, "KUBECONFIG": str(stage.kube.kubeconfig)},
    )  # fmt: skip
    if result.returncode != 0:
        say(result.stdout[-2000:] + result.stderr[-2000:])
    return result.returncode == 0


def play(stage: Stage, name: str, count: int, seed: int) -> Outcome:
    """One scenario in a namespace of its own; the rollout's choices come from `seed` alone, so
    every scenario upgrades and deletes the same plugins."""
    out = Outcome(name)
    namespace = f"chaos-{name}"
    stage.kube.run("create", "namespace", namespace)
    done = threading.Event()
    fault = FAULTS.get(name)
    worker = threading.Thread(
        target=inject, args=(stage, fault, random.Random(f"{seed}/{name}"), done, out),
        daemon=True,
    ) if fault else None  # fmt: skip
    with tenant_of(stage.kube, namespace):
        started = time.monotonic()
        if worker:
            worker.start()
        try:
            wanted = rollout(stage.kube, namespace, count, random.Random(seed))
            rolled = time.monotonic()
            done.set()
            if worker:
                worker.join()
            # a fault may have landed after the last step was seen: the state must hold again
            wait_for(stage.kube, namespace, wanted)
            out.converged = True
            settled = time.monotonic()
            if out.last_fault is not None:
                out.converge = (settled if out.last_fault > rolled else rolled) - out.last_fault
        except (TimeoutError, RuntimeError) as error:
            say(f"  {name}: {error}")
        finally:
            done.set()
            if worker:
                worker.join()
        out.seconds = time.monotonic() - started
        for replica, resumed in out.resumed:
            out.deposed_writes += writes_after(replica, resumed)
        out.verified = verified(stage)
        out.entries = audit_of(stage, namespace)
    return out


def compare(out: Outcome, expected: dict[str, list[tuple[str, str, str]]]) -> None:
    for plugin_name in set(expected) | set(out.entries):
        want = collections.Counter(expected.get(plugin_name, []))
        got = collections.Counter(out.entries.get(plugin_name, []))
        out.lost += sum((want - got).values())
        out.duplicated += sum((got - want).values())


@contextlib.contextmanager
def staged(folder: Path, kills: int) -> Iterator[Stage]:
    layout = local.Layout(folder / "cluster")
    cluster = local.up(layout)
    try:
        users = {identity.user: identity.user for identity in local.USERS}
        kube = Kube(str(cluster.kubectl), layout.kubeconfig, local.CLUSTER_NAME, users, layout)
        kube.run("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
        kube.run("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS))
        audit_namespace, lease = "chaos-audit", "wayang-chaos"
        kube.run("create", "namespace", audit_namespace)
        port = local.free_port()
        replicas = [
            Operator(
                kube,
                folder / name,
                webhook_port=port,
                cert_dir=folder / "webhook",
                env={
                    "WAYANG_STANDALONE": "false",
                    "WAYANG_LEASE_NAME": lease,
                    "WAYANG_LEASE_DURATION": str(LEASE),
                    "WAYANG_AUDIT_NAMESPACE": audit_namespace,
                    "WAYANG_LOG_LEVEL": "DEBUG",
                    "WAYANG_LOG_FORMAT": "json",
                },
            )
            for name in ("first", "second")
        ]
        with running(kube, *replicas):
            yield Stage(kube, layout, replicas, audit_namespace, lease, kills)
    finally:
        local.down(layout)


def report(outcomes: list[Outcome]) -> int:
    say(f"{'scenario':18} {'faults':>6} {'took s':>7} {'converge s':>10} {'lost':>5} "
        f"{'dup':>4} {'deposed':>7} {'entries':>7} verify")  # fmt: skip
    for out in outcomes:
        say(
            f"{out.name:18} {f'{out.faults}/{out.planned}':>6} {out.seconds:7.1f} "
            f"{out.converge:10.1f} "
            f"{out.lost:5} {out.duplicated:4} {len(out.deposed_writes):7} "
            f"{sum(len(e) for e in out.entries.values()):7} "
            f"{'ok' if out.verified else 'FAIL'}{'' if out.converged else ' (did not converge)'}"
        )
        for write in out.deposed_writes[:10]:
            say(f"    deposed leader wrote: {write}")
    lost = sum(o.lost for o in outcomes)
    duplicated = sum(o.duplicated for o in outcomes)
    slowest = max((o.converge for o in outcomes), default=0.0)
    print(
        f"chaos: {len(outcomes)} scenarios, lost {lost}, duplicated {duplicated}, "
        f"max converge {slowest:.1f} s",
        flush=True,
    )
    return 0 if all(o.ok for o in outcomes) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seed", type=int, default=None, help="repeat a run (printed first)")
    parser.add_argument("--plugins", type=int, default=200)
    parser.add_argument("--kills", type=int, default=20, help="leader-kill: how many")
    parser.add_argument("--smoke", action="store_true", help=f"CI's short run: {', '.join(SMOKE)}")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS[1:], default=[])
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    names = ["control", *(args.scenario or (SMOKE[1:] if args.smoke else SCENARIOS[1:]))]
    say(f"chaos: seed {seed}, {args.plugins} plugins, scenarios {', '.join(names)}")
    outcomes: list[Outcome] = []
    with (
        tempfile.TemporaryDirectory(prefix="wayang-chaos-") as folder,
        staged(Path(folder), args.kills) as stage,
    ):
        for name in names:
            say(f"==> {name}")
            out = play(stage, name, args.plugins, seed)
            if outcomes:
                compare(out, outcomes[0].entries)
            else:
                stage.baseline = out.seconds
            outcomes.append(out)
            say(
                f"    {out.seconds:.1f} s, {out.faults} of {out.planned} faults, "
                f"converged {out.converged}"
            )
    return report(outcomes)


if __name__ == "__main__":
    sys.exit(main())

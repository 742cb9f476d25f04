"""Benchmark: the audit log's append rate and verification time, for both stores.

ConfigMaps, on the real local control plane:
- baseline: the raw rate of compare-and-swap replaces of one ConfigMap with a plain client (what
  every append must at least do), measured in the same run;
- appends one entry at a time, and decisions arriving together through the operator's batching
  sink (the aim is 200 entries/s or more);
- 100,000 entries written in batches, then read back and verified (aim: verification under 5 s).
PostgreSQL, on a throwaway local server: the same appends, then 1,000,000 entries written in
batches, read back and verified (aim: verification in 10 s or less; a ConfigMap store of a million
entries would be some 300 MB of etcd, which is what the PostgreSQL store is for).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from kubernetes import client, config

from e2e import localpg
from e2e.localcluster.cluster import Layout, down, up
from wayang_operator.api.audit import Actor, ActorType, AuditEventType, PluginAuditEvent
from wayang_operator.auditlog.configmaps import ConfigMapStore, signer_for
from wayang_operator.auditlog.keys import Signer
from wayang_operator.auditlog.postgres import PostgresStore, initialize
from wayang_operator.auditlog.sink import Store, StoreSink
from wayang_operator.auditlog.verify import verify
from wayang_operator.kube import KubeApi

SINGLE, BURST, BULK, BATCH = 200, 2000, 100_000, 500
MILLION = 1_000_000


def event(number: int, run: str) -> PluginAuditEvent:
    return PluginAuditEvent(
        audit_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{run}/{number}")),
        event_type=AuditEventType.APPROVED,
        plugin_id="acme/redactor",
        version="1.0.0",
        tenant_id="team-a",
        actor=Actor(type=ActorType.USER, id="approver-1"),
        timestamp="2026-11-22T10:00:00.000000Z",
        details={"plugin": f"p{number}", "message": "approved by approver-1", "generation": 1},
    )


def raw_rate(namespace: str) -> float:
    """Compare-and-swap replaces per second of one ConfigMap with a plain client."""
    core = client.CoreV1Api()
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="raw"), data={"n": "0"})
    current = core.create_namespaced_config_map(namespace, body)
    started = time.monotonic()
    for n in range(SINGLE):
        current.data = {"n": str(n)}
        current = core.replace_namespaced_config_map("raw", namespace, current)
    return SINGLE / (time.monotonic() - started)


async def rates(store: Store, run: str) -> tuple[float, float]:
    """Entries/s appending one at a time, and with BURST decisions arriving together."""
    started = time.monotonic()
    for n in range(SINGLE):
        await store.append([event(n, f"{run}-single")])
    single = SINGLE / (time.monotonic() - started)
    sink = StoreSink(store)
    started = time.monotonic()
    await asyncio.gather(*(sink.append(event(n, f"{run}-burst")) for n in range(BURST)))
    return single, BURST / (time.monotonic() - started)


async def bulk(store: Store, run: str, count: int = BULK) -> float:
    started = time.monotonic()
    for start in range(0, count, BATCH):
        await store.append(event(n, f"{run}-bulk") for n in range(start, start + BATCH))
        if count >= MILLION and (start + BATCH) % 100_000 == 0:
            print(f"    {start + BATCH:,} of {count:,} written", flush=True)
    return count / (time.monotonic() - started)


def report(name: str, single: float, burst: float, written: float, count: int = BULK) -> None:
    print(f"  {name}: one at a time {single:7.0f} entries/s   batched burst {burst:7.0f} entries/s")
    print(f"  {name}: bulk write of {count:,} entries at {written:,.0f} entries/s")


async def configmaps(folder: Path) -> None:
    layout = Layout(folder / "cluster")
    up(layout)
    try:
        config.load_kube_config(str(layout.kubeconfig))  # type: ignore[no-untyped-call]
        core = client.CoreV1Api()
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="bench")))
        baseline = raw_rate("bench")
        api = KubeApi()
        store = ConfigMapStore(api, "bench", await signer_for(api, "bench"))
        await store.open()
        single, burst = await rates(store, "cm")
        print("ConfigMap store (real control plane)")
        print(f"  baseline: raw compare-and-swap replace {baseline:7.0f} writes/s")
        report("store", single, burst, await bulk(store, "cm"))
        print(f"  one-at-a-time appends / raw writes: x{single / baseline:.2f}")
        started = time.monotonic()
        snapshot = await store.snapshot()
        read = time.monotonic() - started
        started = time.monotonic()
        result = verify(snapshot, store.signer.verifier)
        checked = time.monotonic() - started
        assert result.ok, result.findings
        print(
            f"  verify {result.size:,} entries: read {read:.2f} s, verify {checked:.2f} s "
            "(aim: under 5 s)"
        )
    finally:
        down(layout)


async def postgres(folder: Path) -> None:
    localpg.ensure_installed()
    folder.chmod(0o755)
    with localpg.running(folder / "pg") as server:
        await initialize(server.dsn, "wayang_audit")
        signer = Signer.generate("wayang.io/audit/bench")
        store = await PostgresStore.connect(
            server.dsn.replace("user=postgres", "user=wayang_audit"), signer
        )
        try:
            single, burst = await rates(store, "pg")
            print("PostgreSQL store (local server)")
            report("store", single, burst, await bulk(store, "pg", MILLION), MILLION)
            started = time.monotonic()
            snapshot = await store.snapshot()
            read = time.monotonic() - started
            started = time.monotonic()
            result = verify(snapshot, signer.verifier)
            checked = time.monotonic() - started
            assert result.ok, result.findings
            print(
                f"  verify {result.size:,} entries: read {read:.2f} s, verify {checked:.2f} s "
                "(aim: 10 s or less)"
            )
        finally:
            await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--part", choices=("configmaps", "postgres"), help="run one store only")
    part = parser.parse_args().part
    with tempfile.TemporaryDirectory(prefix="wayang-bench-audit-") as name:
        folder = Path(name)
        if part in (None, "configmaps"):
            asyncio.run(configmaps(folder))
        if part in (None, "postgres"):
            asyncio.run(postgres(folder))


if __name__ == "__main__":
    main()

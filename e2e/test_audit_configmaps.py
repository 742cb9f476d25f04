"""The ConfigMap audit store on the real API server: attacks made with kubectl, crashes between
the append steps, and two writers at once. Each test writes its own log in its own namespace."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from kubernetes import config
from tests.documents import logged_event as event

from e2e.conftest import Kube
from wayang_operator.auditlog import configmaps
from wayang_operator.auditlog.configmaps import ConfigMapStore, segment_name, signer_for
from wayang_operator.auditlog.keys import Signer
from wayang_operator.auditlog.log import dumps, loads
from wayang_operator.auditlog.verify import Kind, Report, verify
from wayang_operator.kube import KubeApi

SEAL = 10


class CrashError(Exception):
    pass


@pytest.fixture
def api(kube: Kube) -> KubeApi:
    config.load_kube_config(str(kube.kubeconfig))  # type: ignore[no-untyped-call]
    return KubeApi()


async def store(api: KubeApi, namespace: str, **options: Any) -> ConfigMapStore:
    opened = ConfigMapStore(
        api, namespace, await signer_for(api, namespace), seal_entries=SEAL, **options
    )
    await opened.open()
    return opened


async def written(api: KubeApi, namespace: str, count: int) -> ConfigMapStore:
    log = await store(api, namespace)
    for start in range(0, count, 3):
        await log.append(event(n) for n in range(start, min(count, start + 3)))
    return log


async def check(log: ConfigMapStore, trusted: str | None = None) -> Report:
    return verify(await log.snapshot(), log.signer.verifier, trusted)


def head(kube: Kube, namespace: str) -> dict[str, Any]:
    return kube.get("configmap", configmaps.HEAD, namespace)


def replace_data(kube: Kube, namespace: str, name: str, data: dict[str, str]) -> None:
    patch = json.dumps({"data": data})
    kube.run("patch", "configmap", name, "--type=merge", "-p", patch, namespace=namespace)


async def test_the_log_seals_segments_and_verifies(
    api: KubeApi, namespace: str, kube: Kube
) -> None:
    log = await written(api, namespace, 35)
    report = await check(log)
    assert report.ok, report.findings
    assert report.size == 35
    segment = kube.get("configmap", segment_name(1), namespace)
    assert segment["immutable"] is True
    assert len(loads(segment["data"]["records"])) >= SEAL
    published = kube.get("configmap", configmaps.PUBLIC, namespace)["data"]
    assert published["origin"] == log.signer.origin
    assert published["origin"].startswith("wayang.io/audit/")
    assert await log.append([event(3), event(34)]) == 0, "appends are idempotent by audit id"


async def test_an_edited_entry_is_named(api: KubeApi, namespace: str, kube: Kube) -> None:
    log = await written(api, namespace, 27)
    data = head(kube, namespace)["data"]
    tail = loads(data["tail"])
    target = tail[1]["i"]
    tail[1]["entry"]["actor"]["id"] = "mallory"
    replace_data(kube, namespace, configmaps.HEAD, {"tail": dumps(tail)})
    report = await check(log)
    assert [(f.kind, f.index) for f in report.findings] == [(Kind.MODIFIED, target)]


async def test_a_recreated_segment_is_caught(api: KubeApi, namespace: str, kube: Kube) -> None:
    log = await written(api, namespace, 35)
    segment = kube.get("configmap", segment_name(2), namespace)
    records = loads(segment["data"]["records"])
    kube.run("delete", "configmap", segment_name(2), namespace=namespace)
    forged = {**segment["data"], "records": dumps(records[:2] + records[5:])}
    metadata = {"name": segment_name(2), "namespace": namespace}
    document = {"apiVersion": "v1", "kind": "ConfigMap", "immutable": True, "metadata": metadata}
    document["data"] = forged
    kube.apply(document)
    report = await check(log)
    assert report.findings[0].kind is Kind.DELETED
    assert report.findings[0].index == records[2]["i"]


async def test_swapped_entries_are_reordered(api: KubeApi, namespace: str, kube: Kube) -> None:
    log = await written(api, namespace, 27)
    tail = loads(head(kube, namespace)["data"]["tail"])
    tail[0], tail[1] = tail[1], tail[0]
    replace_data(kube, namespace, configmaps.HEAD, {"tail": dumps(tail)})
    report = await check(log)
    assert (report.findings[0].kind, report.findings[0].index) == (Kind.REORDERED, tail[1]["i"])


async def test_a_dropped_tail_is_truncated(api: KubeApi, namespace: str, kube: Kube) -> None:
    log = await written(api, namespace, 27)
    tail = loads(head(kube, namespace)["data"]["tail"])
    replace_data(kube, namespace, configmaps.HEAD, {"tail": dumps(tail[:-2])})
    report = await check(log)
    assert [(f.kind, f.index) for f in report.findings] == [(Kind.TRUNCATED, 25)]


async def test_a_rolled_back_head(api: KubeApi, namespace: str, kube: Kube) -> None:
    log = await written(api, namespace, 22)
    older = head(kube, namespace)["data"]
    await log.append(event(n) for n in range(22, 26))
    trusted = (await log.snapshot()).checkpoint
    replace_data(kube, namespace, configmaps.HEAD, older)
    assert (await check(log)).ok, "an older state is a valid log on its own"
    report = await check(log, trusted)
    assert [(f.kind, f.index) for f in report.findings] == [(Kind.TRUNCATED, 22)]
    with pytest.raises(configmaps.StoreError, match="rolled back"):
        await log.append([event(99)])  # the writer notices too, and refuses to continue


async def test_a_checkpoint_signed_with_another_key(
    api: KubeApi, namespace: str, kube: Kube
) -> None:
    log = await written(api, namespace, 12)
    forger = Signer(Ed25519PrivateKey.generate(), log.signer.origin)
    forged = forger.sign(12, log.state.frontier.root())
    replace_data(kube, namespace, configmaps.HEAD, {"checkpoint": forged})
    report = await check(log)
    assert [f.kind for f in report.findings] == [Kind.BAD_SIGNATURE]


async def test_a_fork_is_caught_with_the_other_heads_checkpoint(
    api: KubeApi, namespace: str, kube: Kube
) -> None:
    ours = await written(api, namespace, 12)
    trusted = (await ours.snapshot()).checkpoint
    other = f"{namespace}-fork"
    kube.run("create", "namespace", other)
    try:
        secret = kube.get("secret", configmaps.SECRET, namespace)
        kube.apply({"apiVersion": "v1", "kind": "Secret", "data": secret["data"],
                    "metadata": {"name": configmaps.SECRET, "namespace": other}})  # fmt: skip
        fork = await store(api, other)
        await fork.append(event(n, writer="fork") for n in range(12))
        assert (await check(fork)).ok, "the fork verifies on its own (same key, same cluster)"
        report = await check(fork, trusted)
        assert [f.kind for f in report.findings] == [Kind.FORKED]
    finally:
        kube.run("delete", "namespace", other, "--wait=false", check=False)


@pytest.mark.parametrize("step", ["segment-created", "head-moved"])
async def test_a_crash_between_steps_loses_and_duplicates_nothing(
    api: KubeApi, namespace: str, step: str
) -> None:
    log = await written(api, namespace, 8)

    def crash(at: str) -> None:
        if at == step:
            raise CrashError(at)

    crashing = await store(api, namespace, fault=crash)
    with pytest.raises(CrashError):
        await crashing.append(event(n) for n in range(8, 12))  # crosses the seal at 10
    restarted = await store(api, namespace)
    await restarted.append(event(n) for n in range(8, 14))  # the operator decides again
    snapshot = await restarted.snapshot()
    ids = [r["entry"]["auditId"] for r in snapshot.records]
    assert ids == [event(n).audit_id for n in range(14)]
    assert verify(snapshot, log.signer.verifier).ok


async def test_two_writers_at_once_never_fork(api: KubeApi, namespace: str) -> None:
    first, second = await store(api, namespace), await store(api, namespace)

    async def write(log: ConfigMapStore, writer: str) -> None:
        for n in range(0, 30, 2):
            await log.append([event(n, writer), event(n + 1, writer)])

    await asyncio.gather(write(first, "one"), write(second, "two"))
    snapshot = await first.snapshot()
    assert len(snapshot.records) == 60
    assert len({r["entry"]["auditId"] for r in snapshot.records}) == 60
    assert verify(snapshot, first.signer.verifier).ok


def wayang(*args: str, kube: Kube) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "wayang"), "audit", *args],
        capture_output=True,
        text=True,
        check=False,
        env={"KUBECONFIG": str(kube.kubeconfig), "PATH": "/usr/bin:/bin"},
    )


async def test_the_cli_verifies_and_names_the_entry(
    api: KubeApi, namespace: str, kube: Kube, tmp_path: Path
) -> None:
    await written(api, namespace, 15)
    vkey = tmp_path / "audit.vkey"
    pubkey = wayang("pubkey", "-n", namespace, kube=kube)
    assert pubkey.returncode == 0, pubkey.stderr
    vkey.write_text(pubkey.stdout)
    saved = tmp_path / "checkpoint"
    saved.write_text(wayang("checkpoint", "-n", namespace, kube=kube).stdout)
    ok = wayang(
        "verify",
        "-n",
        namespace,
        "--vkey",
        str(vkey),
        "--trusted-checkpoint",
        str(saved),
        kube=kube,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "15 entries" in ok.stdout
    shown = wayang("show", "-n", namespace, "--plugin", "redactor", kube=kube).stdout.splitlines()
    assert len(shown) == 15
    exported = wayang("export", "-n", namespace, kube=kube).stdout.splitlines()
    assert [json.loads(line)["i"] for line in exported] == list(range(15))
    tail = loads(head(kube, namespace)["data"]["tail"])
    tail[0]["entry"]["eventType"] = "PLUGIN_REJECTED"
    replace_data(kube, namespace, configmaps.HEAD, {"tail": dumps(tail)})
    bad = wayang("verify", "-n", namespace, "--vkey", str(vkey), "-o", "json", kube=kube)
    assert bad.returncode == 1
    result = json.loads(bad.stdout)
    assert result["firstBadIndex"] == tail[0]["i"]
    assert result["findings"][0]["kind"] == "modified"

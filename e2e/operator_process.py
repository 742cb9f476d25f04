"""A `wayang-operator` process for the e2e tests and the benchmark: started with its own ports
and certificate folder, killable and restartable mid-test, its audit lines readable from its logs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from e2e.conftest import WEBHOOK_CONFIGURATION, Kube
from e2e.localcluster.cluster import free_port
from e2e.scanfixtures import offline_scanning

WORKLOADS = {
    "WAYANG_WORKLOADS": "true",
    "WAYANG_WORKLOAD_CHECK_INTERVAL": "1",
    "WAYANG_WORKLOAD_READY_GRACE": "90",  # gVisor under a loaded CI host: 25 s seen
}
"""The settings of an operator whose tests watch plugins run: observed every second, a readiness
grace that a loaded host's gVisor start-up fits in."""


class Operator:
    """A `wayang-operator` process; can be killed and started again mid-test."""

    def __init__(
        self,
        kube: Kube,
        folder: Path,
        *,
        webhook_port: int | None = None,
        cert_dir: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """Replicas share `webhook_port` (kopf binds it with SO_REUSEPORT, so the kernel spreads
        the API server's requests over them like a Service would) and `cert_dir`; a replica runs
        with peering (`WAYANG_STANDALONE=false` in `env`)."""
        self.kube = kube
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0
        # the same ports on every start, so the webhook configuration stays valid across restarts
        self.ports = {name: free_port() for name in ("METRICS", "LIVENESS")}
        self.ports["WEBHOOK"] = webhook_port or free_port()
        self.cert_dir = cert_dir or folder / "webhook"
        # governance only unless asked: most e2e tests do not start a node for pods to run on
        self.env = {"WAYANG_STANDALONE": "true", "WAYANG_WORKLOADS": "false", **(env or {})}

    def log(self, run: int) -> Path:
        return self.folder / f"operator-{run}.log"

    def start(self) -> None:
        self.runs += 1
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kube.kubeconfig),
            **{f"WAYANG_{name}_PORT": str(port) for name, port in self.ports.items()},
            "WAYANG_WEBHOOK_CERT_DIR": str(self.cert_dir),
            "WAYANG_WEBHOOK_CONFIGURATION": WEBHOOK_CONFIGURATION,
            **self.env,
        }
        with self.log(self.runs).open("wb") as log:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).parent / "wayang-operator")],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log(self.runs).read_text()[-3000:]
            configured = self.kube.run(
                "get", "validatingwebhookconfiguration", WEBHOOK_CONFIGURATION, check=False
            )
            if configured.returncode == 0 and self._alive():
                time.sleep(1)  # the webhook server starts with the configuration
                return
            time.sleep(0.3)
        raise AssertionError(
            "the operator did not come up:\n" + self.log(self.runs).read_text()[-3000:]
        )

    def _alive(self) -> bool:
        with contextlib.suppress(OSError):
            url = f"http://127.0.0.1:{self.ports['LIVENESS']}/healthz"
            with urllib.request.urlopen(url, timeout=2) as r:
                return bool(r.status == 200)
        return False

    def stop(self) -> None:
        """A graceful stop (SIGTERM): kopf removes its managed webhook configuration on exit."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """A crash (SIGKILL): nothing is cleaned up, as after a node failure."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def logs(self) -> str:
        return "".join(self.log(run).read_text() for run in range(1, self.runs + 1))

    def audit(self) -> list[dict[str, Any]]:
        """The audit entries the operator logged (logger `wayang.audit`), from JSON log lines
        (the default when the output is not a terminal) or text ones."""
        entries = []
        for run in range(1, self.runs + 1):
            for line in self.log(run).read_text().splitlines():
                if line.startswith("{"):
                    with contextlib.suppress(ValueError):
                        record = json.loads(line)
                        if record.get("logger") == "wayang.audit":
                            entries.append(json.loads(record["message"]))
                elif " wayang.audit " in line:
                    entries.append(json.loads(line.split(" wayang.audit ", 1)[1]))
        return entries


@contextlib.contextmanager
def running(kube: Kube, *operators: Operator) -> Iterator[None]:
    """Start the operators (in order); at the end kill them and remove the webhook
    configuration, which, pointing at a dead server, would refuse every later request
    (failurePolicy Fail)."""
    try:
        for operator in operators:
            operator.folder.mkdir(parents=True, exist_ok=True)
            operator.start()
        yield
    finally:
        for operator in operators:
            operator.kill()
        for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
            kube.run("delete", kind, WEBHOOK_CONFIGURATION, "--ignore-not-found", check=False)


@contextlib.contextmanager
def scanning_workloads(kube: Kube, folder: Path, **env: str) -> Iterator[Operator]:
    """An operator that runs workloads and scans their artifacts with the pinned trivy and the
    offline test database (scanfixtures), `env` on top, for the length of the block."""
    operator = Operator(kube, folder, env={**WORKLOADS, **offline_scanning([], folder), **env})
    with running(kube, operator):
        yield operator


@contextlib.contextmanager
def with_audit_log(
    kube: Kube, folder: Path, audit_namespace: str, env: dict[str, str] | None = None
) -> Iterator[Operator]:
    """An operator with an audit log of its own, in a fresh namespace (a module's tests read or
    tamper with it), removed at the end."""
    kube.run("delete", "namespace", audit_namespace, "--ignore-not-found", "--wait=true")
    kube.run("create", "namespace", audit_namespace)
    operator = Operator(
        kube, folder, env={**(env or {}), "WAYANG_AUDIT_NAMESPACE": audit_namespace}
    )
    try:
        with running(kube, operator):
            yield operator
    finally:
        kube.run("delete", "namespace", audit_namespace, "--wait=false", check=False)


def audit_export(kube: Kube, audit_namespace: str) -> list[dict[str, Any]]:
    """Every entry of the audit log in `audit_namespace`, as `wayang audit export` prints them."""
    exported = subprocess.run(
        [str(Path(sys.executable).parent / "wayang"), "audit", "export", "-n", audit_namespace],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "KUBECONFIG": str(kube.kubeconfig)},
    ).stdout
    return [json.loads(line)["entry"] for line in exported.splitlines()]

"""A real Kubernetes control plane as local processes: etcd, kube-apiserver, kube-controller-manager
and kube-scheduler on loopback, the way controller-runtime's envtest and Kubernetes'
local-up-cluster.sh run them; beside them an OCI registry (CNCF Distribution, built by build.py)
with a serving certificate of the cluster's CA, on the host's address, for plugin artifacts and
images the node pulls (node.py makes its containerd trust that CA for the registry's address).

Everything lives in one state folder (default `.cluster/` in the repository): certificates,
kubeconfigs, etcd data, one log file and one pid file per process, and `state.json` with the
ports. Starting always begins from a clean slate: whatever a crashed earlier run left (processes
named by pid files, old data) is stopped and removed first. Processes run in their own sessions so
they outlive the command that started them (`make cluster-up`) and are stopped by `down`.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import build
from .pki import Authority, Identity, KeyPair, service_account_keys

CLUSTER_NAME = "wayang-local"
SERVICE_CIDR = "10.0.0.0/24"
ISSUER = "https://kubernetes.default.svc.cluster.local"
USERS_MANIFEST = Path(__file__).with_name("users.yaml")
ORDER = ("registry", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
"""Start order; stop order is the reverse (the API server must go before etcd)."""

ADMIN = Identity("wayang-admin", ("system:masters",))
CONTROLLER_MANAGER = Identity("system:kube-controller-manager")
SCHEDULER = Identity("system:kube-scheduler")
KUBELET_CLIENT = Identity("kube-apiserver-kubelet-client", ("system:masters",))
USERS = (
    Identity("approver-1", ("wayang:approvers",)),
    Identity("approver-2", ("wayang:approvers",)),
    Identity("publisher-1", ("wayang:publishers",)),
)
"""Ordinary users for tests of who may do what; each gets a kubeconfig context of its name."""


def log(message: str) -> None:
    print(f"[cluster] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd-data"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def registry_data(self) -> Path:
        """The registry's storage (blobs and repositories), forgotten with the cluster."""
        return self.root / "registry-data"

    @property
    def registry_config(self) -> Path:
        return self.root / "registry.yml"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def node_images(self) -> Path:
        """The image archives imported into this cluster's node (node.py), kept beside the node
        rather than in it: a node stopped to lend the host to another cluster gets them back
        when it starts again, so the pods it ran come back too."""
        return self.root / "node-images.json"

    def pid_file(self, name: str) -> Path:
        return self.pids / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.logs / f"{name}.log"


def default_layout() -> Layout:
    """`.cluster/` in the repository, or `$WAYANG_CLUSTER_DIR`: a second cluster (say, with a
    node) beside one that someone else's tests are using."""
    explicit = os.environ.get("WAYANG_CLUSTER_DIR")
    if explicit:
        return Layout(Path(explicit).expanduser().absolute())
    return Layout(Path(__file__).resolve().parents[2] / ".cluster")


def e2e_layout() -> Layout:
    """The e2e tier's own cluster, `e2e/` in the default folder: started by each session from a
    clean slate and stopped at its end, so the suite never meets what `make demo` or a user
    installed on the cluster they keep (the chart's webhooks, operator and default policy would
    decide the tests' plugins), and never leaves anything on it."""
    return Layout(default_layout().root / "e2e")


def free_port() -> int:
    """A TCP port free right now on every address (the caller binds it soon after). Probed on
    the wildcard address: a port free on loopback may be held on the host's address (the
    kubelet listens on the node IP), and the operator's webhook binds 0.0.0.0."""
    with socket.socket() as probe:
        probe.bind(("", 0))
        port: int = probe.getsockname()[1]
        return port


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (exited, not yet reaped by us) is not alive
    with contextlib.suppress(ChildProcessError):
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished == pid:
            return False
    return True


def _read_pid(layout: Layout, name: str) -> int | None:
    try:
        return int(layout.pid_file(name).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _stop(layout: Layout, name: str, timeout: float = 15.0) -> None:
    pid = _read_pid(layout, name)
    if pid is not None and _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            log(f"{name} (pid {pid}) ignored SIGTERM for {timeout:.0f}s; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    layout.pid_file(name).unlink(missing_ok=True)


def down(layout: Layout | None = None) -> None:
    """Stop every process of the cluster (API server before etcd) and forget its data.

    A node started on it (node.py, `up --node`) goes first: a kubelet without its API server is
    useless, and a crashed run's node must not outlive the cluster it belonged to.
    """
    layout = layout or default_layout()
    if (layout.root / "node").exists():
        from . import node  # node.py builds on this module  # noqa: PLC0415

        node.stop(layout)
    for name in reversed(ORDER):
        _stop(layout, name)
    shutil.rmtree(layout.etcd_data, ignore_errors=True)
    shutil.rmtree(layout.registry_data, ignore_errors=True)
    layout.state.unlink(missing_ok=True)
    layout.node_images.unlink(missing_ok=True)


def restart(layout: Layout, name: str, *, crash: bool = False) -> int:
    """Stop one process of the cluster (SIGTERM, or SIGKILL with `crash`) and start it again
    with the command line it had, for the chaos suite (e2e/chaos.py); returns the new pid. Its
    data and ports stay, so clients reconnect to the same address."""
    pid = _read_pid(layout, name)
    if pid is None or not _alive(pid):
        raise RuntimeError(f"{name} is not running in {layout.root}")
    args = [part.decode() for part in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]]
    if crash:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.05)
    else:
        _stop(layout, name)
    return _start(layout, name, args)


def _start(layout: Layout, name: str, args: list[str], env: dict[str, str] | None = None) -> int:
    layout.logs.mkdir(parents=True, exist_ok=True)
    layout.pids.mkdir(parents=True, exist_ok=True)
    with layout.log_file(name).open("ab") as log_file:
        log_file.write(f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(args)}\n".encode())
        log_file.flush()
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    layout.pid_file(name).write_text(f"{process.pid}\n")
    return process.pid


def _wait(name: str, pid: int, layout: Layout, check: Callable[[], bool], timeout: float) -> float:
    """Wait until `check` passes; return the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if not _alive(pid):
            tail = layout.log_file(name).read_text(errors="replace").splitlines()[-25:]
            raise RuntimeError(f"{name} exited during start; last log lines:\n" + "\n".join(tail))
        if check():
            took = time.monotonic() - started
            log(f"{name} ready in {took:.1f}s")
            return took
        time.sleep(0.1)
    raise RuntimeError(f"{name} not ready after {timeout:.0f}s; see {layout.log_file(name)}")


def host_address() -> str | None:
    """The address of the interface with the default route, or None on a machine without one.

    The API server advertises it (the `kubernetes` Service's endpoint), so pods reach the control
    plane through kube-proxy: a loopback endpoint would be each pod's own loopback. The node
    (node.py) registers under it too.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("203.0.113.1", 9))  # a UDP connect picks a route; nothing is sent
            address: str = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def _http_ok(url: str, context: ssl.SSLContext | None = None, *, strict: bool = False) -> bool:
    """Whether `url` answers 200; `strict` lets an HTTP error status through to the caller."""
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError:
        if strict:
            raise
        return False
    except (OSError, ValueError):
        return False


def _client_context(ca: Path, client: KeyPair | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if client:
        context.load_cert_chain(str(client.cert), str(client.key))
    return context


def _insecure_context() -> ssl.SSLContext:
    """For the self-signed health endpoints of the controller manager and the scheduler."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig_document(
    server: str, ca: bytes, users: dict[str, KeyPair], current: str
) -> dict[str, Any]:
    """One cluster, a user and a context per identity (the admin's context is the cluster name)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER_NAME,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca)},
            }
        ],
        "users": [
            {
                "name": name,
                "user": {
                    "client-certificate-data": _b64(pair.cert_pem()),
                    "client-key-data": _b64(pair.key_pem()),
                },
            }
            for name, pair in users.items()
        ],
        "contexts": [
            {"name": name, "context": {"cluster": CLUSTER_NAME, "user": name}} for name in users
        ],
        "current-context": current,
    }


def _write_yaml(path: Path, document: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    path.chmod(0o600)


@dataclass(frozen=True)
class Registry:
    """The cluster's OCI registry: `address` (host:port) is the same from the host and from pods
    (the host's address, which pods reach through the node's bridge); its certificate chains to
    `ca`, the cluster's CA."""

    address: str
    ca: Path


def registry_config(
    data: Path, listen: str, serving: KeyPair, auth: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Distribution's configuration: filesystem storage, TLS, deletes allowed so tests can
    remove what they pushed, and no authentication unless `auth` (Distribution's `auth`
    section) says otherwise: the cluster's own is a throwaway registry; the token flow is
    tested against one that asks for tokens (tests/integration/test_oci.py)."""
    return {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": False}},
        "storage": {"filesystem": {"rootdirectory": str(data)}, "delete": {"enabled": True}},
        "http": {
            "addr": listen,
            "tls": {"certificate": str(serving.cert), "key": str(serving.key)},
        },
    } | ({"auth": auth} if auth else {})


def start_registry(
    layout: Layout,
    binary: Path,
    authority: Authority,
    address: str,
    port: int,
    auth: dict[str, Any] | None = None,
) -> tuple[Registry, float]:
    """Start the registry on `address:port` (and loopback: the same port on every address),
    with a serving certificate of `authority` for both; returns it and how long it took."""
    serving = authority.serving("registry", ["localhost"], sorted({"127.0.0.1", address}))
    layout.registry_data.mkdir(parents=True, exist_ok=True)
    config = registry_config(layout.registry_data, f":{port}", serving, auth)
    layout.registry_config.write_text(yaml.safe_dump(config, sort_keys=False))
    pid = _start(layout, "registry", [str(binary), "serve", str(layout.registry_config)])
    context = _client_context(authority.pair.cert, None)

    def answers() -> bool:  # 200, or 401 from one that wants a token
        try:
            return _http_ok(f"https://{address}:{port}/v2/", context, strict=True)
        except urllib.error.HTTPError as error:
            return error.code == 401

    took = _wait("registry", pid, layout, answers, 30)
    return Registry(f"{address}:{port}", authority.pair.cert), took


def registry(layout: Layout | None = None) -> Registry | None:
    """The running cluster's registry, as `up` recorded it."""
    layout = layout or default_layout()
    try:
        recorded = json.loads(layout.state.read_text())["registry"]
    except (FileNotFoundError, ValueError, KeyError):
        return None
    return Registry(recorded["address"], Path(recorded["ca"]))


@dataclass(frozen=True)
class Cluster:
    """A running local cluster: where to reach it and how to run kubectl against it."""

    layout: Layout
    server: str
    kubectl: Path
    ready_seconds: dict[str, float] = field(default_factory=dict)
    """How long each component took to become ready (filled by `up`)."""

    def run_kubectl(self, *args: str, context: str = CLUSTER_NAME, stdin: str | None = None) -> str:
        result = subprocess.run(
            [
                str(self.kubectl),
                f"--kubeconfig={self.layout.kubeconfig}",
                f"--context={context}",
                *args,
            ],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout


def up(layout: Layout | None = None) -> Cluster:
    """Build (cached) and start a fresh control plane; returns once every component is ready."""
    layout = layout or default_layout()
    started = time.monotonic()
    binaries = build.ensure_built(build.CONTROL_PLANE)
    down(layout)
    shutil.rmtree(layout.pki, ignore_errors=True)
    for folder in (layout.root, layout.pki, layout.etcd_data, layout.bin):
        folder.mkdir(parents=True, exist_ok=True)
    layout.etcd_data.chmod(0o700)

    authority = Authority(layout.pki)
    # Pods reach the API server at the `kubernetes` Service, whose endpoint is the advertised
    # address: the host's own, with the server listening on every address (loopback for the
    # kubeconfig, the host's for pods). Without one, only the host can reach it.
    advertise = host_address() or "127.0.0.1"
    serving = authority.serving(
        "apiserver",
        [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ],
        sorted({"127.0.0.1", "10.0.0.1", advertise}),
    )
    sa = service_account_keys(layout.pki)
    admin = authority.client(ADMIN)
    kubelet_client = authority.client(KUBELET_CLIENT)
    names = ("registry", "etcd", "etcd-peer", "apiserver", "kcm", "scheduler")
    ports = {name: free_port() for name in names}
    server = f"https://127.0.0.1:{ports['apiserver']}"
    oci, took = start_registry(
        layout, binaries["registry"], authority, advertise, ports["registry"]
    )
    ready = {"registry": took}

    etcd_url = f"http://127.0.0.1:{ports['etcd']}"
    peer_url = f"http://127.0.0.1:{ports['etcd-peer']}"
    pid = _start(
        layout,
        "etcd",
        [
            str(binaries["etcd"]),
            "--name=wayang",
            f"--data-dir={layout.etcd_data}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=wayang={peer_url}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ],
    )
    ready["etcd"] = _wait("etcd", pid, layout, lambda: _http_ok(f"{etcd_url}/health"), 30)

    pki = layout.pki
    pid = _start(
        layout,
        "kube-apiserver",
        [
            str(binaries["kube-apiserver"]),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1" if advertise == "127.0.0.1" else "--bind-address=0.0.0.0",
            f"--advertise-address={advertise}",
            f"--secure-port={ports['apiserver']}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={serving.cert}",
            f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={authority.pair.cert}",
            f"--service-account-issuer={ISSUER}",
            f"--service-account-key-file={sa.cert}",
            f"--service-account-signing-key-file={sa.key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            "--enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,"
            "NodeRestriction,ResourceQuota,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,"
            "ValidatingAdmissionPolicy",
            f"--kubelet-client-certificate={kubelet_client.cert}",
            f"--kubelet-client-key={kubelet_client.key}",
            # the local node (node.py) registers under a name DNS does not know: dial its IP
            "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
            "--profiling=false",
        ],
    )
    api_context = _client_context(authority.pair.cert, admin)
    ready["kube-apiserver"] = _wait(
        "kube-apiserver", pid, layout, lambda: _http_ok(f"{server}/readyz", api_context), 90
    )

    ca_pem = authority.pair.cert_pem()
    component_configs = {}
    for identity, stem in ((CONTROLLER_MANAGER, "kcm"), (SCHEDULER, "scheduler")):
        path = layout.root / f"{stem}.kubeconfig"
        _write_yaml(
            path, kubeconfig_document(server, ca_pem, {stem: authority.client(identity)}, stem)
        )
        component_configs[stem] = path
    users = {CLUSTER_NAME: admin} | {user.user: authority.client(user) for user in USERS}
    _write_yaml(layout.kubeconfig, kubeconfig_document(server, ca_pem, users, CLUSTER_NAME))

    kcm = component_configs["kcm"]
    pid = _start(
        layout,
        "kube-controller-manager",
        [
            str(binaries["kube-controller-manager"]),
            f"--kubeconfig={kcm}",
            f"--authentication-kubeconfig={kcm}",
            f"--authorization-kubeconfig={kcm}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['kcm']}",
            "--leader-elect=false",
            f"--service-account-private-key-file={sa.key}",
            f"--root-ca-file={authority.pair.cert}",
            f"--cluster-signing-cert-file={authority.pair.cert}",
            f"--cluster-signing-key-file={authority.pair.key}",
            "--use-service-account-credentials=true",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--controllers=*",
            "--profiling=false",
        ],
    )
    kcm_pid = pid
    scheduler = component_configs["scheduler"]
    pid = _start(
        layout,
        "kube-scheduler",
        [
            str(binaries["kube-scheduler"]),
            f"--kubeconfig={scheduler}",
            f"--authentication-kubeconfig={scheduler}",
            f"--authorization-kubeconfig={scheduler}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['scheduler']}",
            "--leader-elect=false",
        ],
    )
    # the two start side by side; neither needs the other
    health = _insecure_context()
    for name, component_pid, port in (
        ("kube-controller-manager", kcm_pid, ports["kcm"]),
        ("kube-scheduler", pid, ports["scheduler"]),
    ):
        healthz = functools.partial(_http_ok, f"https://127.0.0.1:{port}/healthz", health)
        ready[name] = _wait(name, component_pid, layout, healthz, 60)

    kubectl_link = layout.bin / "kubectl"
    kubectl_link.unlink(missing_ok=True)
    kubectl_link.symlink_to(binaries["kubectl"])
    cluster = Cluster(layout, server, binaries["kubectl"], ready)
    cluster.run_kubectl("apply", f"--filename={USERS_MANIFEST}")
    layout.state.write_text(
        json.dumps(
            {
                "server": server,
                "ports": ports,
                "kubernetes": build.KUBERNETES_VERSION,
                "registry": {"address": oci.address, "ca": str(oci.ca)},
            },
            indent=2,
        )
    )
    log(f"control plane up in {time.monotonic() - started:.1f}s at {server}")
    return cluster


def current(layout: Layout | None = None) -> Cluster | None:
    """The running cluster described by the state folder, if its API server answers."""
    layout = layout or default_layout()
    try:
        state = json.loads(layout.state.read_text())
    except (FileNotFoundError, ValueError):
        return None
    admin = KeyPair(
        layout.pki / f"client-{ADMIN.file_stem}.crt", layout.pki / f"client-{ADMIN.file_stem}.key"
    )
    context = _client_context(layout.pki / "ca.crt", admin)
    if not _http_ok(f"{state['server']}/readyz", context):
        return None
    return Cluster(layout, state["server"], build.binary_path("kubectl"))


def status(layout: Layout | None = None) -> list[tuple[str, int | None, bool]]:
    """(component, pid, alive) for each process of the cluster."""
    layout = layout or default_layout()
    result = []
    for name in ORDER:
        pid = _read_pid(layout, name)
        result.append((name, pid, pid is not None and _alive(pid)))
    return result

"""A real Kubernetes node on this machine: a private containerd with runc and gVisor, a kubelet and
kube-proxy, joined to the local control plane of cluster.py.

Sandboxed plugins are the product's promise, so the e2e tier must be able to prove that a pod runs
under gVisor; an API server alone cannot run a pod. This module starts, next to the control plane
and under its state folder (`<cluster>/node/`), everything a node needs, without touching a system
containerd or kubelet:

- containerd from the OS packages (1.6 on Debian bookworm, the last line Kubernetes 1.35 supports)
  with its own root, state, socket and config, the CRI plugin, and two runtimes: `runc`
  (io.containerd.runc.v2) and `runsc` (io.containerd.runsc.v1, gVisor's shim built from source by
  build.py); a CNI bridge (`wayang0`, pods in 10.88.0.0/16) with host-local IPAM;
- a pause (sandbox) image built here from e2e/tools/pause (imported: the node needs it before
  anything could be pushed);
- the cluster's OCI registry as a trusted source of images: containerd's CRI reads
  `<node>/containerd/certs.d/<registry host:port>/hosts.toml` (`config_path`), which names the
  cluster's CA for it, so pods whose image is `<registry>/name@sha256:…` are pulled from it;
- the kubelet (built from source) as `system:node:wayang-node`, cgroup v1 with the cgroupfs
  driver, pods under its own cgroup root `/wayang-node`;
- kube-proxy in iptables mode, so ClusterIP Services answer from the host and from pods;
- kube-router (built from source) with only its firewall controller, which enforces
  NetworkPolicies with iptables and ipsets (the bridge plugin enforces none);
- the RuntimeClass `gvisor` (handler `runsc`).

What it changes on the host, and undoes in `stop`: sysctls (IP forwarding, bridge netfilter, and
the kernel tunables the kubelet sets), iptables rules (kube-proxy's and kube-router's KUBE-*
chains and the bridge plugin's CNI-* masquerading), kube-router's ipsets, the bridge interface,
network namespaces under /var/run/netns, symlinks in /var/log/containers, and cgroups named
wayang-node. Containerd 1.6 also keeps shim sockets under /run/containerd/s (names hashed from our
socket, so they never collide).

Images: `import_image` imports an OCI layout (directory or tar) into containerd's `k8s.io`
namespace under its tag *and* under `<repository>@<manifest digest>`, so a pod may name it either
way; `imagePullPolicy: Never` or `IfNotPresent` then finds it without a registry. Pinning by digest
needs the digest name: containerd 1.6's CRI only resolves references it has an image record for,
and `ctr images import` makes one for a digest only when asked (`--digests`).

Needs root (containerd, iptables, cgroups, mounts) and Linux; `ensure_packages` installs the OS
packages with apt-get when they are missing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from wayang_operator.images.oci import REF_NAME, File, ImageSpec, build, manifest_digest, to_tar

from . import build as gobuild
from .cluster import (
    SERVICE_CIDR,
    Cluster,
    Layout,
    Registry,
    _alive,
    _http_ok,
    _read_pid,
    _start,
    _stop,
    _wait,
    default_layout,
    free_port,
    host_address,
    kubeconfig_document,
)
from .cluster import current as current_cluster
from .cluster import registry as cluster_registry
from .pki import Authority, Identity, KeyPair

NODE_NAME = "wayang-node"
POD_CIDR = "10.88.0.0/16"
GVISOR_OVERHEAD = {"cpu": "20m", "memory": "64Mi"}
"""What a gVisor sandbox itself costs (its Sentry and gofer live in the pod's cgroup): added to
the pod's limits and to scheduling through the RuntimeClass's pod overhead. Without it, a Python
plugin limited to 96Mi has its sandbox OOM-killed while starting (measured: the Sentry took about
45 MB besides the application's memory). The CPU part is small so that 50 sandboxes still fit
this 2-core node; the Sentry's CPU is mostly the application's system calls anyway."""
BRIDGE = "wayang0"
CNI_NETWORK = "wayang-pods"
CGROUP_ROOT = "wayang-node"
"""The kubelet's cgroup root (and containerd's cgroup below it) in every cgroup hierarchy."""
RUNTIME_CLASS = "gvisor"
RUNSC_HANDLER = "runsc"
PAUSE_REPOSITORY = "localhost/wayang/pause"
PROCESSES = ("containerd", "kubelet", "kube-proxy", "kube-router")
"""Start order; stop order is the reverse."""
READY_TIMEOUT = 120.0

CNI_DIR = Path("/usr/lib/cni")
NETNS_DIR = Path("/var/run/netns")
CONTAINER_LOG_LINKS = Path("/var/log/containers")
"""The kubelet links container logs here whatever its configuration; `stop` removes ours."""
CGROUP_MOUNT = Path("/sys/fs/cgroup")
SHIM_SOCKETS = Path("/run/containerd/s")
OWNER = Path("/run/wayang-node.owner")
"""Which node folder runs the host-wide pieces (bridge, cgroups, iptables, sysctls) now."""

PACKAGES: dict[str, tuple[Path, ...]] = {
    "containerd": (
        Path("/usr/bin/containerd"),
        Path("/usr/bin/ctr"),
        Path("/usr/bin/containerd-shim-runc-v2"),
    ),
    "runc": (Path("/usr/sbin/runc"),),
    "containernetworking-plugins": tuple(
        CNI_DIR / plugin for plugin in ("bridge", "host-local", "loopback", "portmap")
    ),
    "iptables": (Path("/usr/sbin/iptables"),),
    "ipset": (Path("/usr/sbin/ipset"),),  # kube-router keeps NetworkPolicy peers in ipsets
}
"""Debian packages the node needs, each with the files that show it is installed."""
CAP_SYS_RESOURCE = 24

SYSCTLS: dict[str, str | None] = {
    # set by us: pods reach the world, and bridged pod-to-pod replies pass kube-proxy's NAT
    "net/ipv4/ip_forward": "1",
    "net/bridge/bridge-nf-call-iptables": "1",
    "net/bridge/bridge-nf-call-ip6tables": "1",
    # set by the kubelet itself (protectKernelDefaults: false); remembered to be restored
    "vm/overcommit_memory": None,
    "vm/panic_on_oom": None,
    "kernel/panic": None,
    "kernel/panic_on_oops": None,
    "kernel/keys/root_maxkeys": None,
    "kernel/keys/root_maxbytes": None,
}
"""Host sysctls the node changes: the value we set (None: the kubelet sets it). `stop` restores
what was there before."""

KUBELET = Identity(f"system:node:{NODE_NAME}", ("system:nodes",))
KUBE_PROXY = Identity("system:kube-proxy")
"""Bound to the ClusterRole system:node-proxier by the API server's default policy."""
KUBE_ROUTER_IPSETS = ("KUBE-SRC-", "KUBE-DST-", "kube-router-")
"""Prefixes of the ipsets kube-router's firewall makes (per-policy peers, the local pods);
`inet6:` before them for IPv6, which is off here. Its iptables chains are all KUBE-…."""


def log(message: str) -> None:
    print(f"[node] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class NodeLayout:
    """Where the node keeps its state: `<cluster>/node/`; logs and pids go with the cluster's."""

    cluster: Layout

    @property
    def root(self) -> Path:
        return self.cluster.root / "node"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def run(self) -> Path:
        """Sockets: short paths, as a unix socket path has at most 107 bytes."""
        return self.root / "run"

    @property
    def socket(self) -> Path:
        return self.run / "containerd.sock"

    @property
    def bin(self) -> Path:
        """First on containerd's PATH: containerd 1.6 finds a shim by name when it starts a pod
        sandbox (`runtime_path` only applies to later containers)."""
        return self.root / "bin"

    @property
    def containerd(self) -> Path:
        return self.root / "containerd"

    @property
    def containerd_config(self) -> Path:
        return self.containerd / "config.toml"

    @property
    def registry_hosts(self) -> Path:
        """containerd's `config_path`: a `hosts.toml` per registry host:port."""
        return self.containerd / "certs.d"

    @property
    def runsc_config(self) -> Path:
        return self.containerd / "runsc.toml"

    @property
    def cni_conf(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def kubelet(self) -> Path:
        return self.root / "kubelet"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def runtime_logs(self) -> Path:
        """runsc's and its shim's logs, one folder per container."""
        return self.cluster.logs / "runsc"


# ------------------------------------------------------------------------ packages


def _missing_packages() -> list[str]:
    return [name for name, files in PACKAGES.items() if not all(f.exists() for f in files)]


def ensure_packages() -> None:
    """Install the OS packages the node runs on (containerd, runc, CNI plugins, iptables).

    They come from the distribution rather than being built: containerd and runc are what a
    Debian node would run, and the system containerd service is not started (policy-rc.d, or no
    init system), as the node only ever runs its own containerd.
    """
    missing = _missing_packages()
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(
            f"the node needs the OS packages {', '.join(missing)}; install them "
            f"(`sudo apt-get install {' '.join(missing)}`) or run as root on Debian"
        )
    install = ["install", "-y", "--no-install-recommends", *missing]
    log(f"installing OS packages: {' '.join(missing)} (apt-get)")
    if _apt_get(install) != 0:
        log("apt-get install failed; running apt-get update and trying again")
        if _apt_get(["update"]) != 0 or _apt_get(install) != 0:
            raise RuntimeError(f"apt-get install {' '.join(missing)} failed (see lines above)")
    still = _missing_packages()
    if still:
        raise RuntimeError(f"apt-get finished but {', '.join(still)} still look missing")
    log("OS packages installed")


def _apt_get(args: Sequence[str]) -> int:
    """Run apt-get, echoing its progress lines (downloads, unpacking, setting up)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    process = subprocess.Popen(
        ["apt-get", "-o", "Dpkg::Use-Pty=0", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    for raw in process.stdout:
        line = raw.rstrip()
        if line.startswith(("Get:", "Unpacking", "Setting up", "E:", "Err:", "Fetched")):
            log(f"  apt-get: {line}")
    return process.wait()


# ---------------------------------------------------------------------------- pki


class _ClusterAuthority(Authority):
    """The cluster's CA read back from disk, issuing into another folder.

    `Authority()` makes a new CA; the node's certificates must chain to the running cluster's.
    """

    def __init__(self, ca_folder: Path, out_folder: Path) -> None:  # no super(): no new CA
        self.folder = out_folder
        out_folder.mkdir(parents=True, exist_ok=True)
        key = serialization.load_pem_private_key((ca_folder / "ca.key").read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise RuntimeError(f"{ca_folder / 'ca.key'}: expected an EC key")
        self.key = key
        self.cert = x509.load_pem_x509_certificate((ca_folder / "ca.crt").read_bytes())
        self.pair = KeyPair(ca_folder / "ca.crt", ca_folder / "ca.key")


# -------------------------------------------------------------------------- state


@dataclass(frozen=True)
class ImportedImage:
    """An image in the node's containerd, by the names a pod spec can use."""

    name: str
    """The tag reference (`localhost/x:1.0`)."""
    digest: str
    """The manifest digest (`sha256:…`)."""

    @property
    def repository(self) -> str:
        name = self.name.split("@", 1)[0]
        last_slash = name.rfind("/")
        colon = name.rfind(":")
        return name[:colon] if colon > last_slash else name

    @property
    def by_digest(self) -> str:
        """`<repository>@<digest>`: the pinned reference the product uses."""
        return f"{self.repository}@{self.digest}"


@dataclass(frozen=True)
class Node:
    """A running node: its name, the cluster it joined and its private containerd."""

    layout: NodeLayout
    cluster: Cluster
    name: str = NODE_NAME
    ip: str = ""
    ready_seconds: dict[str, float] = field(default_factory=dict)

    def ctr(self, *args: str, timeout: float = 120) -> str:
        """`ctr` against the node's containerd, in the CRI's namespace (k8s.io)."""
        return _ctr(self.layout, *args, timeout=timeout)

    def import_image(self, source: Path) -> ImportedImage:
        return import_image(source, self.layout.cluster)


def _ctr(layout: NodeLayout, *args: str, timeout: float = 120) -> str:
    """The OS package's `ctr` against our containerd: there is no crictl in Debian bookworm."""
    result = subprocess.run(
        ["ctr", f"--address={layout.socket}", "--namespace=k8s.io", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(f"ctr {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def _image_name(source: Path) -> str:
    """The one image's full name in an OCI layout (directory or tar)."""
    if source.is_dir():
        index = json.loads((source / "index.json").read_text())
    else:
        with tarfile.open(source) as tar:
            member = tar.extractfile("index.json")
            if member is None:
                raise RuntimeError(f"{source}: no index.json")
            index = json.loads(member.read())
    names = [
        m.get("annotations", {}).get("io.containerd.image.name")
        or m.get("annotations", {}).get(REF_NAME)
        for m in index.get("manifests", [])
    ]
    if len(names) != 1 or not names[0] or "/" not in names[0]:
        raise RuntimeError(
            f"{source}: expected one image named in full (localhost/x:tag), found {names}"
        )
    return str(names[0])


def import_image(source: Path, layout: Layout | None = None) -> ImportedImage:
    """Import an OCI image layout (directory or tar) into the node's containerd (`k8s.io`).

    The image gets its tag name and `<repository>@<manifest digest>` (`--digests` with the
    repository as base name), so pods can pin it by digest with `imagePullPolicy: Never` or
    `IfNotPresent`; nothing is pulled. The source is remembered beside the node
    (`Layout.node_images`): when the node starts again after lending the host to another
    cluster (`lend_host`), its images are imported again.
    """
    layout = layout or default_layout()
    image = _import(NodeLayout(layout), source)
    known = _remembered_images(layout)
    if str(source) not in known:
        layout.node_images.write_text(json.dumps([*known, str(source)], indent=2))
    return image


def _remembered_images(layout: Layout) -> list[str]:
    with contextlib.suppress(OSError, ValueError):
        return [str(path) for path in json.loads(layout.node_images.read_text())]
    return []


def _import(nodes: NodeLayout, source: Path) -> ImportedImage:
    name = _image_name(source)
    digest = manifest_digest(source)
    image = ImportedImage(name, digest)
    with contextlib.ExitStack() as stack:
        archive = source
        if source.is_dir():
            folder = stack.enter_context(tempfile.TemporaryDirectory(dir=nodes.root))
            archive = to_tar(source, Path(folder) / "image.tar")
        _ctr(
            nodes,
            "images",
            "import",
            f"--base-name={image.repository}",
            "--digests",
            str(archive),
        )
    return image


def _cni_config() -> dict[str, Any]:
    """A bridge with host-local IPAM (the CRI adds the loopback network itself)."""
    return {
        "cniVersion": "0.4.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": "",  # filled in by _write_configs
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def _toml_string(value: str | Path) -> str:
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def registry_hosts(registry: Registry) -> str:
    """containerd's `hosts.toml` for the cluster's registry: pull and resolve from it over HTTPS,
    trusting the cluster's CA for it (and for nothing else)."""
    server = f"https://{registry.address}"
    return (
        f"server = {_toml_string(server)}\n\n"
        f"[host.{_toml_string(server)}]\n"
        '  capabilities = ["pull", "resolve"]\n'
        f"  ca = {_toml_string(registry.ca)}\n"
    )


def _write_configs(
    nodes: NodeLayout, binaries: dict[str, Path], pause: str, registry: Registry | None
) -> None:
    """containerd's, runsc's and the CNI's configuration, all pointing into the node folder so
    nothing of a system containerd (/etc/containerd with its certs.d, /var/lib/containerd,
    /opt/cni) is used; the cluster's registry gets its hosts.toml."""
    if registry is not None:
        hosts = nodes.registry_hosts / registry.address
        hosts.mkdir(parents=True, exist_ok=True)
        (hosts / "hosts.toml").write_text(registry_hosts(registry))
    cri = '[plugins."io.containerd.grpc.v1.cri"'
    runsc_options: dict[str, str | Path] = {
        "binary_name": binaries["runsc"],
        "root": nodes.run / "runsc",
        "log_level": "debug",
        "log_path": nodes.runtime_logs / "shim",  # a folder: the shims append to shim.log
    }
    runsc_flags = {
        "debug-log": f"{nodes.runtime_logs}/%ID%/runsc.%COMMAND%.log",
        "platform": "systrap",
    }
    nodes.runsc_config.write_text(
        "".join(f"{key} = {_toml_string(value)}\n" for key, value in runsc_options.items())
        + "\n[runsc_config]\n"
        + "".join(f"  {key} = {_toml_string(value)}\n" for key, value in runsc_flags.items())
    )
    config = f"""\
# Generated by e2e/localcluster/node.py: the local node's private containerd.
version = 2
root = {_toml_string(nodes.containerd / "root")}
state = {_toml_string(nodes.run / "state")}
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = {_toml_string(nodes.socket)}

[ttrpc]
  address = {_toml_string(nodes.run / "containerd.ttrpc.sock")}

[plugins."io.containerd.internal.v1.opt"]
  path = {_toml_string(nodes.containerd / "opt")}

{cri}]
  sandbox_image = {_toml_string(pause)}
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # root here lacks CAP_SYS_RESOURCE (a VM sandbox's choice), so runc may not lower a process's
  # oom_score_adj below its own: the kubelet asks -998 for pod sandboxes and runc fails with
  # "can't get final child's PID from pipe: EOF". Clamp to containerd's own score instead.
  restrict_oom_score_adj = {str(_restrict_oom_score_adj()).lower()}

{cri}.registry]
  config_path = {_toml_string(nodes.registry_hosts)}

{cri}.containerd]
  default_runtime_name = "runc"
  snapshotter = "overlayfs"

{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

{cri}.containerd.runtimes.runc.options]
  BinaryName = {_toml_string(PACKAGES["runc"][0])}
  Root = {_toml_string(nodes.run / "runc")}
  SystemdCgroup = false

{cri}.containerd.runtimes.{RUNSC_HANDLER}]
  runtime_type = "io.containerd.runsc.v1"

{cri}.containerd.runtimes.{RUNSC_HANDLER}.options]
  TypeUrl = "io.containerd.runsc.v1.options"
  ConfigPath = {_toml_string(nodes.runsc_config)}

{cri}.cni]
  bin_dir = {_toml_string(CNI_DIR)}
  conf_dir = {_toml_string(nodes.cni_conf)}
  max_conf_num = 1
"""
    nodes.containerd_config.write_text(config)
    cni = _cni_config()
    cni["plugins"][0]["ipam"]["dataDir"] = str(nodes.cni_ipam)
    (nodes.cni_conf / "10-wayang.conflist").write_text(json.dumps(cni, indent=2))


# ------------------------------------------------------------------------ cgroups


def _hierarchies() -> list[Path]:
    """Mounted cgroup v1 hierarchies (and the hybrid unified one), by their mount points."""
    mounts = []
    with open("/proc/self/mounts") as table:
        for line in table:
            _, point, kind, *_ = line.split()
            if kind in {"cgroup", "cgroup2"} and Path(point).is_relative_to(CGROUP_MOUNT):
                mounts.append(Path(point))
    return mounts


def _make_cgroup(relative: str) -> None:
    """Create `relative` in every hierarchy (cpuset needs its cpus and mems filled in)."""
    for hierarchy in _hierarchies():
        path = hierarchy
        for part in Path(relative).parts:
            parent, path = path, path / part
            path.mkdir(exist_ok=True)
            for knob in ("cpuset.cpus", "cpuset.mems"):
                if (path / knob).exists() and not (path / knob).read_text().strip():
                    (path / knob).write_text((parent / knob).read_text())


def _join_cgroup(relative: str, pid: int) -> None:
    for hierarchy in _hierarchies():
        procs = hierarchy / relative / "cgroup.procs"
        with contextlib.suppress(OSError):
            procs.write_text(str(pid))


def _cgroup_pids() -> set[int]:
    pids: set[int] = set()
    for hierarchy in _hierarchies():
        base = hierarchy / CGROUP_ROOT
        if base.is_dir():
            for procs in base.rglob("cgroup.procs"):
                with contextlib.suppress(OSError):
                    pids |= {int(p) for p in procs.read_text().split()}
    return pids


def _remove_cgroups() -> None:
    for hierarchy in _hierarchies():
        base = hierarchy / CGROUP_ROOT
        if not base.is_dir():
            continue
        folders = sorted((p for p in base.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for folder in [*folders, base]:
            with contextlib.suppress(OSError):
                folder.rmdir()


# ------------------------------------------------------------------------ helpers


def _restrict_oom_score_adj() -> bool:
    """Whether we lack CAP_SYS_RESOURCE, i.e. may not lower an OOM score below our own."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("CapEff:"):
                return not int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1
    return True


def _node_ip() -> str:
    """The address the API server dials the kubelet at; the kubelet refuses a loopback one, so a
    machine with no other address cannot be a node."""
    address = host_address()
    if address is None:
        raise RuntimeError("the node needs a non-loopback IPv4 address (the kubelet refuses one)")
    return address


def _sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key


def _read_sysctls() -> dict[str, str]:
    values = {}
    for key in SYSCTLS:
        with contextlib.suppress(OSError):
            values[key] = _sysctl_path(key).read_text().strip()
    return values


def _write_sysctl(key: str, value: str) -> None:
    try:
        _sysctl_path(key).write_text(value)
    except OSError as error:
        log(f"could not set {key.replace('/', '.')}={value}: {error}")


def _processes_mentioning(needles: Sequence[str]) -> list[int]:
    """Processes (not us) whose command line names one of `needles` (our sockets and folders)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(needle in command for needle in needles):
            found.append(int(entry.name))
    return found


def _kill_all(pids: set[int] | list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _mounts_under(folders: Sequence[Path]) -> list[Path]:
    found = []
    with open("/proc/self/mountinfo") as table:
        for line in table:
            point = Path(line.split()[4].encode().decode("unicode_escape"))
            if any(point.is_relative_to(folder) for folder in folders):
                found.append(point)
    return found


def _unmount_all(folders: Sequence[Path]) -> None:
    for _ in range(5):  # stacked mounts: one layer at a time
        points = _mounts_under(folders)
        if not points:
            return
        for point in sorted(points, key=lambda p: -len(p.parts)):
            subprocess.run(["umount", "--lazy", str(point)], capture_output=True, check=False)


def _iptables(command: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([command, "-w", *args], capture_output=True, text=True, check=False)


def _remove_rules(command: str, table: str, doomed: Callable[[str, list[str]], bool]) -> None:
    """Delete the rules (`-S` form) for which `doomed(chain, words)` holds, then empty chains
    that no rule jumps to any more and that `doomed(chain, [])` names."""
    listing = _iptables(command, "-t", table, "-S").stdout.splitlines()
    chains = [line.split()[1] for line in listing if line.startswith("-N ")]
    for line in listing:
        words = shlex.split(line)
        if words[:1] == ["-A"] and doomed(words[1], words):
            _iptables(command, "-t", table, "-D", *words[1:])
    for chain in chains:
        if doomed(chain, []):
            _iptables(command, "-t", table, "-F", chain)
    for chain in chains:
        if doomed(chain, []):
            _iptables(command, "-t", table, "-X", chain)


def _remove_iptables_leftovers(cni_chains: set[str]) -> None:
    """Delete what the node's components leave in iptables.

    - the bridge plugin's masquerading (`CNI-…` chains, rules commented with our network's
      name): the plugin removes them when a pod's network is torn down, pods killed with the
      node leave them behind;
    - the kubelet's own chains (KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT) and
      anything kube-proxy's `--cleanup` left: `KUBE-…` chains are only ever the node's here.
    """
    marker = f'name: "{CNI_NETWORK}"'

    def doomed(chain: str, words: list[str]) -> bool:
        if not words:
            return chain.startswith("KUBE-") or chain in cni_chains
        target = words[words.index("-j") + 1] if "-j" in words else ""
        return (
            chain.startswith("KUBE-")
            or target.startswith("KUBE-")
            or chain in cni_chains
            or any(marker in word for word in words)
        )

    for command in ("iptables", "ip6tables"):
        if shutil.which(command) is None:
            continue
        for table in ("filter", "nat", "mangle"):
            _remove_rules(command, table, doomed)


def _remove_ipsets(prefixes: tuple[str, ...]) -> None:
    """Destroy the ipsets named with one of `prefixes` (IPv6 ones carry `inet6:` before it).

    Only once no iptables rule uses them: the kernel refuses to destroy a set in use.
    """
    if shutil.which("ipset") is None:
        return
    listing = subprocess.run(["ipset", "list", "-n"], capture_output=True, text=True, check=False)
    for name in listing.stdout.split():
        if name.removeprefix("inet6:").startswith(prefixes):
            result = subprocess.run(
                ["ipset", "destroy", name], capture_output=True, text=True, check=False
            )
            if result.returncode != 0:
                log(f"could not destroy ipset {name}: {result.stderr.strip()}")


def _cni_chains() -> set[str]:
    """The bridge plugin's per-pod chains for our network (found by their rules' comment): the
    targets of the marked jumps, and chains holding marked rules whose jump is already gone (a pod
    whose teardown was cut short between the two)."""
    if shutil.which("iptables") is None:
        return set()
    marker = f'name: "{CNI_NETWORK}"'
    chains = set()
    for line in _iptables("iptables", "-t", "nat", "-S").stdout.splitlines():
        words = shlex.split(line)
        if not any(marker in word for word in words):
            continue
        target = words[words.index("-j") + 1] if "-j" in words else ""
        chains |= {chain for chain in (words[1], target) if chain.startswith("CNI-")}
    return chains


# --------------------------------------------------------------------------- stop


def _containers(nodes: NodeLayout) -> dict[str, Path | None]:
    """Our containers, each with the network namespace the CRI made for it (pod sandboxes; the
    CRI keeps those in /var/run/netns), read from containerd before it stops."""
    found: dict[str, Path | None] = {}
    try:
        for container in _ctr(nodes, "containers", "list", "--quiet", timeout=20).split():
            info = json.loads(_ctr(nodes, "containers", "info", container, timeout=20))
            found[container] = None
            for namespace in info.get("Spec", {}).get("linux", {}).get("namespaces", []):
                path = namespace.get("path", "")
                if namespace.get("type") == "network" and path.startswith(str(NETNS_DIR)):
                    found[container] = Path(path)
    except (RuntimeError, subprocess.TimeoutExpired, ValueError):
        pass
    return found


def _shim_socket(nodes: NodeLayout, container: str) -> Path:
    """Where containerd 1.6's shims put their socket: /run/containerd/s/<sha256(socket/ns/id)>.

    A shim removes it when it exits normally; killed shims leave it.
    """
    key = hashlib.sha256(f"{nodes.socket}/k8s.io/{container}".encode()).hexdigest()
    return SHIM_SOCKETS / key


def _running(pid: int) -> bool:
    """Alive and not a zombie: a process another one started (`up` on the command line) is,
    once dead, reaped by this VM's init only after a while; it runs nothing any more."""
    if not _alive(pid):
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]


def _kill(layout: Layout, name: str) -> None:
    """SIGKILL a process of the node (its process group) and wait until it has exited."""
    pid = _read_pid(layout, name)
    if pid is not None and _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    layout.pid_file(name).unlink(missing_ok=True)


def _other_node(nodes: NodeLayout) -> Path | None:
    """The folder of another cluster's node that is running on this host, if any.

    One node per host: they would share the bridge, the cgroup root and the iptables chains.
    """
    try:
        owner = Path(OWNER.read_text())
    except OSError:
        return None
    if owner == nodes.root or not any(alive for _, _, alive in status(Layout(owner.parent))):
        return None
    return owner


def stop(layout: Layout | None = None) -> None:
    """Stop the node and undo what it changed on the host; safe to call again, or with no node.

    Pods are not stopped one by one: the kubelet goes first, then every process in the node's
    cgroups and every process naming the node's folders (shims, runsc sandboxes) is killed, and
    the network namespaces, mounts, iptables rules, bridge and cgroups they leave are removed.
    """
    layout = layout or default_layout()
    nodes = NodeLayout(layout)
    if not nodes.root.exists():
        return
    started = time.monotonic()
    state: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        state = json.loads(nodes.state.read_text())

    # the bridge, cgroups, iptables chains and sysctls are the host's, shared by any node here;
    # if another cluster's node is running they are its, and only our own things go
    host_wide = _other_node(nodes) is None

    # first, so that it does not put back the chains and ipsets removed below; killed, as it
    # leaves them in place anyway when it stops and takes ~2 s to (upstream's `--cleanup-config`
    # would flush every IPVS service and destroy every ipset on the host: the cleanup below is
    # by name instead)
    _kill(layout, "kube-router")
    _stop(layout, "kube-proxy")
    proxy = gobuild.binary_path("kube-proxy")
    if host_wide and state.get("kube-proxy-config") and proxy.exists():
        # removes the KUBE-* chains; only our kube-proxy ever ran on this host
        subprocess.run(
            [str(proxy), "--cleanup", f"--config={state['kube-proxy-config']}"],
            capture_output=True,
            check=False,
            timeout=60,
        )
    _stop(layout, "kubelet")
    containers = _containers(nodes) if nodes.socket.exists() else {}
    _stop(layout, "containerd")

    needles = [f"{nodes.root}/"]  # shims name our socket, runsc our runsc root, all under it
    for _ in range(20):
        leftovers = set(_processes_mentioning(needles))
        if host_wide:
            leftovers |= _cgroup_pids()
        if not leftovers:
            break
        _kill_all(leftovers)
        time.sleep(0.25)
    for container, netns in containers.items():
        if netns is not None:
            subprocess.run(["umount", "--lazy", str(netns)], capture_output=True, check=False)
            netns.unlink(missing_ok=True)
        _shim_socket(nodes, container).unlink(missing_ok=True)
    _unmount_all([nodes.root])
    if host_wide:
        _remove_iptables_leftovers(_cni_chains())  # kube-router's chains are KUBE-… too
        _remove_ipsets(KUBE_ROUTER_IPSETS)
        if Path(f"/sys/class/net/{BRIDGE}").exists():
            subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True, check=False)
        _remove_cgroups()
    if CONTAINER_LOG_LINKS.is_dir():
        for link in CONTAINER_LOG_LINKS.iterdir():
            with contextlib.suppress(OSError):
                if link.is_symlink() and Path(os.readlink(link)).is_relative_to(nodes.root):
                    link.unlink()
    for key, value in (state.get("sysctls") or {}).items() if host_wide else ():
        if _read_sysctls().get(key) != value:
            _write_sysctl(key, value)
    with contextlib.suppress(OSError):
        if Path(OWNER.read_text()) == nodes.root:
            OWNER.unlink()

    cluster = current_cluster(layout)
    if cluster is not None:
        with contextlib.suppress(RuntimeError):
            cluster.run_kubectl("delete", "node", NODE_NAME, "--ignore-not-found", "--wait=false")
    shutil.rmtree(nodes.root, ignore_errors=True)
    log(f"node stopped in {time.monotonic() - started:.1f}s")


# ----------------------------------------------------------------------------- up


def _pause_image(nodes: NodeLayout) -> Path:
    """The sandbox image: e2e/tools/pause in an otherwise empty image, named by its content."""
    binary = gobuild.ensure_tool("pause")
    tag = binary.name.rsplit("-", 1)[-1]
    spec = ImageSpec(
        f"{PAUSE_REPOSITORY}:{tag}",
        [[File("pause", binary.read_bytes(), 0o755)]],
        entrypoint=["/pause"],
        user="65535:65535",
    )
    image = build(spec, nodes.images / "pause")
    return image.layout


def _node_certificates(layout: Layout, nodes: NodeLayout, node_ip: str) -> dict[str, KeyPair]:
    authority = _ClusterAuthority(layout.pki, nodes.pki)
    return {
        "kubelet": authority.client(KUBELET),
        "kube-proxy": authority.client(KUBE_PROXY),
        "serving": authority.serving(
            "kubelet-serving", [NODE_NAME, "localhost"], sorted({node_ip, "127.0.0.1"})
        ),
    }


def _kubelet_config(
    layout: Layout,
    nodes: NodeLayout,
    certs: dict[str, KeyPair],
    node_ip: str,
    ports: dict[str, int],
) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # Kubernetes 1.35 refuses cgroup v1 unless told otherwise; this machine has only v1
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",  # no systemd here
        "cgroupRoot": f"/{CGROUP_ROOT}",
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{nodes.socket}",
        "address": node_ip,
        "port": ports["kubelet"],
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": ports["kubelet-healthz"],
        "tlsCertFile": str(certs["serving"].cert),
        "tlsPrivateKeyFile": str(certs["serving"].key),
        # the API server proves itself with its kubelet client certificate (system:masters);
        # the kubelet asks the API server (webhook) whether a caller may read logs or exec
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(layout.pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "podLogsDir": str(nodes.pod_logs),
        "clusterDomain": "cluster.local",
        "resolvConf": "/etc/resolv.conf",
        # small disks: evict only when nearly full, and never collect imported images
        "evictionHard": {
            "memory.available": "50Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
            "imagefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "protectKernelDefaults": False,
        "serializeImagePulls": False,
        "runtimeRequestTimeout": "5m",
    }


def _kube_proxy_config(kubeconfig: Path, ports: dict[str, int]) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NODE_NAME,
        "clusterCIDR": POD_CIDR,
        "bindAddress": "127.0.0.1",
        "healthzBindAddress": f"127.0.0.1:{ports['proxy-healthz']}",
        "metricsBindAddress": f"127.0.0.1:{ports['proxy-metrics']}",
        # leave the host's conntrack sysctls and route_localnet alone
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        "iptables": {"localhostNodePorts": False},
        "nodePortAddresses": ["primary"],
    }


def _write_yaml(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    path.chmod(0o600)
    return path


def _node_ready(cluster: Cluster, kubelet_port: int) -> bool:
    """Ready, as reported by *this* kubelet (its port), not a stale Node object of a crashed run."""
    try:
        node = json.loads(cluster.run_kubectl("get", "node", NODE_NAME, "-o", "json"))
    except (RuntimeError, ValueError):
        return False
    status = node.get("status", {})
    port = status.get("daemonEndpoints", {}).get("kubeletEndpoint", {}).get("Port")
    conditions = status.get("conditions", [])
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return ready and port == kubelet_port


def _socket_answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as client:
        try:
            client.connect(str(path))
        except OSError:
            return False
    return True


def up(layout: Layout | None = None) -> Node:
    """Start a node on the running local control plane; returns once the Node is Ready.

    Begins from a clean slate (`stop` first), like the control plane does.
    """
    layout = layout or default_layout()
    cluster = current_cluster(layout)
    if cluster is None:
        raise RuntimeError(f"no local control plane answers (state in {layout.root}); start it")
    if os.geteuid() != 0:
        raise RuntimeError("the node needs root (containerd, iptables, cgroups, mounts)")
    other = _other_node(NodeLayout(layout))
    if other is not None:
        raise RuntimeError(f"the node in {other} runs on this host; stop it first (one per host)")
    started = time.monotonic()
    ensure_packages()
    binaries = gobuild.ensure_built(gobuild.NODE)
    stop(layout)
    OWNER.write_text(str(NodeLayout(layout).root))
    _warn_if_api_server_dials_names(layout)
    try:
        node = _start_node(layout, cluster, binaries)
    except BaseException:
        log(f"the node did not come up; stopping what started (logs stay in {layout.logs})")
        stop(layout)
        raise
    log(f"node {NODE_NAME} ({node.ip}) ready in {time.monotonic() - started:.1f}s")
    return node


@contextlib.contextmanager
def lend_host(layout: Layout) -> Iterator[Node]:
    """The host's one node, for the cluster in `layout`, for the length of the block.

    A host runs one node (bridge, cgroup root and iptables chains are host-wide): if another
    cluster's node runs here (the one `make demo` left to explore), it is stopped first and
    started again afterwards on its own control plane, which kept running, with the images it
    had imported (`Layout.node_images`), so its pods come back as they were. Our node is
    stopped at the end.
    """
    other = _other_node(NodeLayout(layout))
    lender = Layout(other.parent) if other is not None else None
    if lender is not None:
        log(
            f"the node of the cluster in {lender.root} runs on this host, which has room for one: "
            "stopping it for now; it starts again, with its images, when this one stops"
        )
        stop(lender)
    try:
        yield up(layout)
    finally:
        stop(layout)
        if lender is not None and current_cluster(lender) is not None:
            log(f"starting the node of the cluster in {lender.root} again")
            up(lender)


def _warn_if_api_server_dials_names(layout: Layout) -> None:
    """A control plane started before cluster.py passed `--kubelet-preferred-address-types`
    dials the kubelet by the node's name, which DNS does not know: pods run, logs/exec fail."""
    pid = _read_pid(layout, "kube-apiserver")
    with contextlib.suppress(OSError, TypeError):
        if b"--kubelet-preferred-address-types" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            log(
                "WARNING: this API server dials kubelets by host name; `kubectl logs/exec` on "
                "the node will fail until the control plane is restarted (`up`)"
            )


def _start_node(layout: Layout, cluster: Cluster, binaries: dict[str, Path]) -> Node:
    nodes = NodeLayout(layout)
    for folder in (nodes.pki, nodes.run, nodes.containerd, nodes.cni_conf, nodes.cni_ipam,
                   nodes.kubelet, nodes.pod_logs, nodes.images, nodes.runtime_logs):  # fmt: skip
        folder.mkdir(parents=True, exist_ok=True)
    node_ip = _node_ip()
    names = ("kubelet", "kubelet-healthz", "proxy-healthz", "proxy-metrics", "router-health")
    ports = {name: free_port() for name in names}
    state: dict[str, Any] = {"node": NODE_NAME, "ip": node_ip, "ports": ports}
    state["sysctls"] = _read_sysctls()
    nodes.state.write_text(json.dumps(state, indent=2))
    for key, value in SYSCTLS.items():
        if value is not None:
            _write_sysctl(key, value)

    pause = _pause_image(nodes)
    pause_name = _image_name(pause)
    _write_configs(nodes, binaries, pause_name, cluster_registry(layout))
    _make_cgroup(f"{CGROUP_ROOT}/runtime")
    nodes.bin.mkdir(parents=True, exist_ok=True)
    (nodes.bin / "containerd-shim-runsc-v1").symlink_to(binaries["containerd-shim-runsc-v1"])
    system_path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    env = {**os.environ, "PATH": f"{nodes.bin}:{system_path}"}
    pid = _start(layout, "containerd", ["containerd", f"--config={nodes.containerd_config}"], env)
    _join_cgroup(f"{CGROUP_ROOT}/runtime", pid)
    ready = {
        "containerd": _wait("containerd", pid, layout, lambda: _socket_answers(nodes.socket), 30)
    }
    _import(nodes, pause)
    for remembered in _remembered_images(layout):
        if Path(remembered).exists():
            _import(nodes, Path(remembered))
        else:
            log(f"not imported again: {remembered} is gone")

    certs = _node_certificates(layout, nodes, node_ip)
    ca_pem = (layout.pki / "ca.crt").read_bytes()
    kubelet_kubeconfig = _write_yaml(
        nodes.root / "kubelet.kubeconfig",
        kubeconfig_document(cluster.server, ca_pem, {"kubelet": certs["kubelet"]}, "kubelet"),
    )
    proxy_kubeconfig = _write_yaml(
        nodes.root / "kube-proxy.kubeconfig",
        kubeconfig_document(
            cluster.server, ca_pem, {"kube-proxy": certs["kube-proxy"]}, "kube-proxy"
        ),
    )
    kubelet_config = _write_yaml(
        nodes.root / "kubelet.yaml", _kubelet_config(layout, nodes, certs, node_ip, ports)
    )
    proxy_config = _write_yaml(
        nodes.root / "kube-proxy.yaml", _kube_proxy_config(proxy_kubeconfig, ports)
    )
    state["kube-proxy-config"] = str(proxy_config)
    nodes.state.write_text(json.dumps(state, indent=2))

    pid = _start(
        layout,
        "kubelet",
        [
            str(binaries["kubelet"]),
            f"--config={kubelet_config}",
            f"--kubeconfig={kubelet_kubeconfig}",
            f"--root-dir={nodes.kubelet}",
            f"--cert-dir={nodes.pki}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={node_ip}",
            "--v=2",
        ],
    )
    kubelet_pid = pid
    pid = _start(
        layout,
        "kube-proxy",
        [str(binaries["kube-proxy"]), f"--config={proxy_config}", "--v=2"],
    )
    cluster.run_kubectl(
        "apply",
        "--filename=-",
        stdin=yaml.safe_dump(
            {
                "apiVersion": "node.k8s.io/v1",
                "kind": "RuntimeClass",
                "metadata": {"name": RUNTIME_CLASS},
                "handler": RUNSC_HANDLER,
                "overhead": {"podFixed": GVISOR_OVERHEAD},
            }
        ),
    )
    ready["kubelet"] = _wait(
        "kubelet",
        kubelet_pid,
        layout,
        lambda: _node_ready(cluster, ports["kubelet"]),
        READY_TIMEOUT,
    )
    # kube-router reads its Node (addresses) when it starts and exits if there is none yet
    router_args = _kube_router_args(binaries["kube-router"], layout, ports)
    router_pid = _start(layout, "kube-router", router_args, env)
    ready["kube-proxy"] = _wait(
        "kube-proxy",
        pid,
        layout,
        lambda: _http_ok(f"http://127.0.0.1:{ports['proxy-healthz']}/healthz"),
        60,
    )
    ready["kube-router"] = _wait(
        "kube-router",
        router_pid,
        layout,
        lambda: _http_ok(f"http://127.0.0.1:{ports['router-health']}/healthz"),
        60,
    )
    return Node(nodes, cluster, NODE_NAME, node_ip, ready)


def _kube_router_args(binary: Path, layout: Layout, ports: dict[str, int]) -> list[str]:
    """kube-router as a NetworkPolicy engine only: pods keep the CNI bridge's network and
    kube-proxy's Services; kube-router adds, per local pod a policy selects, an iptables chain
    (KUBE-POD-FW-…, jumped to from INPUT, FORWARD and OUTPUT, bridged traffic included) and the
    policies' peers as ipsets. Pods no policy selects stay open (no `--netpol-default-deny`, which
    would also need a pod CIDR in the Node's spec)."""
    return [
        str(binary),
        f"--kubeconfig={layout.kubeconfig}",  # the admin's: it watches pods, namespaces, policies
        f"--hostname-override={NODE_NAME}",
        "--run-firewall=true",
        "--run-router=false",
        "--run-service-proxy=false",
        # the control plane's (kube-router assumes 10.96.0.0/12): host-bound traffic to Service
        # IPs is let through its INPUT chain
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--health-addr=127.0.0.1",
        f"--health-port={ports['router-health']}",
        "--metrics-port=0",
        "--v=1",
    ]


def current(layout: Layout | None = None) -> Node | None:
    """The running node of the cluster in `layout`, if its processes and the API server live."""
    layout = layout or default_layout()
    nodes = NodeLayout(layout)
    if not nodes.state.exists() or not all(alive for _, _, alive in status(layout)):
        return None
    cluster = current_cluster(layout)
    if cluster is None:
        return None
    state = json.loads(nodes.state.read_text())
    return Node(nodes, cluster, state.get("node", NODE_NAME), state.get("ip", ""))


def status(layout: Layout | None = None) -> list[tuple[str, int | None, bool]]:
    """(process, pid, alive) for each process of the node."""
    layout = layout or default_layout()
    result = []
    for name in PROCESSES:
        pid = _read_pid(layout, name)
        result.append((name, pid, pid is not None and _alive(pid)))
    return result

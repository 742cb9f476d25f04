#!/usr/bin/env python3
"""Build pinned upstream Kubernetes control-plane binaries and etcd from Go modules.

``go install k8s.io/kubernetes/cmd/...@vX`` does not work: k8s.io/kubernetes's
go.mod replaces its staging modules (k8s.io/api, k8s.io/client-go, ...) with
local paths, and ``go install pkg@version`` refuses modules with replace
directives. etcd's go.mod does the same with ``../api`` etc.

This script therefore generates a small helper module per release under
``<cache>/gobuild/`` which requires the upstream module and replaces every
locally-replaced module with its *published* version (derived from the upstream
go.mod, not hard-coded), then runs ``go build -o`` for each main package with
upstream's release flags (``-trimpath``, tags ``selinux,notest,grpcnotrace``,
``-s -w``, version ldflags, ``CGO_ENABLED=0``).

The local node (node.py) adds the kubelet, kube-proxy and gVisor (``runsc`` and
``containerd-shim-runsc-v1``) from one pinned commit of gVisor's ``go`` branch,
with one build-time patch (see :class:`Patch` and ``GVISOR_SHIM_OOM``), and
kube-router (its NetworkPolicy firewall; upstream builds it with ``CGO_ENABLED=0``
and no tags, its go.mod replaces nothing).

Go's own module and build caches (``go env GOMODCACHE`` / ``GOCACHE``) are used
unchanged so other projects share them. Binaries land in
``<cache>/bin/<release>-<ver>/`` (kubernetes, etcd, gvisor, kube-router, trivy, helm,
distribution) where ``<cache>`` is ``${WAYANG_CACHE:-${XDG_CACHE_HOME:-~/.cache}/wayang}``.

Usage::

    python3 e2e/localcluster/build.py [--print-paths] [--force] [component ...]

Importable (see :func:`ensure_built`); the cache location and lock are shared with the image
builds (:mod:`wayang_operator.images.cache`).
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from wayang_operator.images.cache import cache_root, locked

KUBERNETES_VERSION = "v1.35.4"
ETCD_VERSION = "v3.6.16"
TRIVY_VERSION = "v0.67.2"
HELM_VERSION = "v4.3.1"
REGISTRY_VERSION = "v3.1.2"
"""CNCF Distribution: the OCI registry of e2e and the demo (artifacts and images, over TLS)."""
GVISOR_VERSION = "v0.0.0-20260413194555-9680d69bf798"
"""A commit of gVisor's `go` branch (the generated, `go build`-able tree; master needs Bazel).

Not older: Go 1.26 fails on branch commits before December 2025 (``undefined: goready``). Not
newer: from May 2026 the branch's shim is built on containerd 2's shim library, whose ``start``
answers containerd with a JSON bootstrap record; containerd 1.6 (Debian bookworm, the last line
Kubernetes 1.35 supports) reads that answer as the socket address and cannot connect. This commit
is the last one on the proxy whose shim still uses containerd 1.6's library (plain address).
"""
KUBE_ROUTER_VERSION = "v2.10.0"
"""The node's NetworkPolicy engine (firewall controller only). Needs Go >= 1.26.0 (its go.mod)."""
TOOLS = Path(__file__).resolve().parents[1] / "tools"
"""The project's own small Go programs (test fixtures), each a module of its own."""

# Bump when the build recipe changes in a way that should invalidate binaries.
BUILD_SCHEMA = 1
# Upstream release builds: hack/lib/golang.sh (non-DBG) uses these tags, -trimpath
# and "-s -w"; see also hack/lib/version.sh for the -X version variables.
KUBE_BUILD_TAGS = "selinux,notest,grpcnotrace"
STRIP_LDFLAGS = ("-s", "-w")
FAILURE_TAIL_LINES = 50
HEARTBEAT_SECONDS = 60.0


class BuildError(RuntimeError):
    """Raised when a Go build step fails."""


@dataclass(frozen=True)
class Patch:
    """A change to one upstream source file of a pinned release, made at build time.

    The module is copied from the (checksum-verified) module cache into the helper module's
    folder, patched there and swapped in with a local ``replace``; the module cache stays
    pristine (``go build -overlay`` would be lighter but refuses files under GOMODCACHE).
    ``old`` must occur exactly once, so a version bump that changes the code fails loudly
    instead of building unpatched.
    """

    module: str  # the root module or one of the extra modules
    path: str  # file inside the module
    old: str
    new: str
    why: str


@dataclass(frozen=True)
class Override:
    """A dependency built at another published version than the one upstream's go.mod pins.

    Only for a pinned version the module proxy here refuses (``403 … not available``); the
    build then uses ``version`` through a ``replace`` in the helper module, and
    :func:`_check_pins` stays quiet about it because the substitution is declared here.
    """

    module: str
    version: str
    why: str


@dataclass(frozen=True)
class Release:
    """One upstream source release built through a generated helper module."""

    name: str  # "kubernetes" / "etcd"
    version: str  # "v1.35.4"
    root_module: str  # module whose go.mod drives the helper module
    extra_modules: tuple[str, ...]  # further modules to require (same version)
    tags: str
    published_version: Callable[[str], str]  # locally replaced module -> version
    env: tuple[tuple[str, str], ...] = ()  # extra build environment, as upstream's release build
    patches: tuple[Patch, ...] = ()
    overrides: tuple[Override, ...] = ()

    @property
    def dir_name(self) -> str:
        return f"{self.name}-{self.version.removeprefix('v')}"


@dataclass(frozen=True)
class Component:
    name: str
    release: Release
    package: str


def _kube_staging_version(_module: str) -> str:
    # Staging modules are published as v0.MINOR.PATCH for Kubernetes v1.MINOR.PATCH.
    major, rest = KUBERNETES_VERSION.removeprefix("v").split(".", 1)
    if major != "1":
        raise BuildError(f"unexpected Kubernetes version {KUBERNETES_VERSION}")
    return f"v0.{rest}"


def _etcd_module_version(_module: str) -> str:
    # All etcd modules (api, client/pkg, client/v3, pkg, server, etcdctl) share a tag.
    return ETCD_VERSION


KUBERNETES = Release(
    name="kubernetes",
    version=KUBERNETES_VERSION,
    root_module="k8s.io/kubernetes",
    extra_modules=(),
    tags=KUBE_BUILD_TAGS,
    published_version=_kube_staging_version,
)
ETCD = Release(
    name="etcd",
    version=ETCD_VERSION,
    root_module="go.etcd.io/etcd/server/v3",
    extra_modules=("go.etcd.io/etcd/etcdctl/v3",),
    tags="",
    published_version=_etcd_module_version,
)

TRIVY = Release(
    name="trivy",
    version=TRIVY_VERSION,
    root_module="github.com/aquasecurity/trivy",
    extra_modules=(),
    tags="",
    published_version=_etcd_module_version,  # unused: trivy's go.mod replaces nothing locally
    env=(("GOEXPERIMENT", "jsonv2"),),  # as trivy's goreleaser.yml builds it
)


def _unused_published_version(module: str) -> str:
    raise BuildError(f"{module}: this release's go.mod is not expected to replace it locally")


HELM = Release(
    name="helm",
    version=HELM_VERSION,
    root_module="helm.sh/helm/v4",
    extra_modules=(),
    tags="",  # upstream's Makefile: CGO_ENABLED=0 go build with the version ldflags below
    published_version=_unused_published_version,  # helm's go.mod replaces nothing
)

REGISTRY = Release(
    name="distribution",
    version=REGISTRY_VERSION,
    root_module="github.com/distribution/distribution/v3",
    extra_modules=(),
    tags="",  # upstream's Dockerfile: BUILDTAGS empty, -trimpath, the version ldflags below
    published_version=_unused_published_version,  # its go.mod replaces nothing
)


GVISOR_SHIM_OOM = Patch(
    module="gvisor.dev/gvisor",
    path="pkg/shim/v1/service.go",
    old="\tif err := sys.SetOOMScore(cmd.Process.Pid, oomScoreMaxKillable); err != nil {\n",
    new="\tif err := sys.SetOOMScore(cmd.Process.Pid, oomScoreMaxKillable);"
    " err != nil && !os.IsPermission(err) {\n",
    why="The shim gives the shim process it starts an OOM score of -999 and fails the pod when "
    "that is refused. Lowering a score needs CAP_SYS_RESOURCE, which root lacks on machines "
    "like this test VM (a bounding-set choice of its sandbox), so no gVisor pod could start: "
    "'failed to set OOM Score on shim: write /proc/N/oom_score_adj: permission denied'. "
    "Tolerating EACCES is what containerd's own runc shim does when unprivileged "
    "(containerd/sys.SetOOMScore); with the capability the score is still set.",
)

GVISOR = Release(
    name="gvisor",
    version=GVISOR_VERSION,
    root_module="gvisor.dev/gvisor",
    extra_modules=(),
    tags="",
    published_version=_unused_published_version,  # the go branch's go.mod replaces nothing
    patches=(GVISOR_SHIM_OOM,),
)

KUBE_ROUTER_NETLINK = Override(
    module="github.com/vishvananda/netlink",
    version="v1.3.1",
    why="the module proxy here refuses the pinned v1.3.2-0.20260505210927-99e979749d3e "
    "(403 'This module version is not available'); v1.3.1 is netlink's newest release, "
    "kube-router builds against it unchanged",
)

KUBE_ROUTER = Release(
    name="kube-router",
    version=KUBE_ROUTER_VERSION,
    root_module="github.com/cloudnativelabs/kube-router/v2",
    extra_modules=(),
    tags="",  # upstream's Makefile: plain `CGO_ENABLED=0 go build` with version ldflags
    published_version=_unused_published_version,  # its go.mod replaces nothing
    overrides=(KUBE_ROUTER_NETLINK,),
)

COMPONENTS: dict[str, Component] = {
    c.name: c
    for c in (
        Component("etcd", ETCD, "go.etcd.io/etcd/server/v3"),
        Component("etcdctl", ETCD, "go.etcd.io/etcd/etcdctl/v3"),
        Component("kube-apiserver", KUBERNETES, "k8s.io/kubernetes/cmd/kube-apiserver"),
        Component(
            "kube-controller-manager",
            KUBERNETES,
            "k8s.io/kubernetes/cmd/kube-controller-manager",
        ),
        Component("kube-scheduler", KUBERNETES, "k8s.io/kubernetes/cmd/kube-scheduler"),
        Component("kubelet", KUBERNETES, "k8s.io/kubernetes/cmd/kubelet"),
        Component("kube-proxy", KUBERNETES, "k8s.io/kubernetes/cmd/kube-proxy"),
        # gVisor for the node's sandboxed runtime class: the runtime and containerd's shim for it
        # (runtime_type io.containerd.runsc.v1 makes containerd run `containerd-shim-runsc-v1`).
        Component("runsc", GVISOR, "gvisor.dev/gvisor/runsc"),
        Component("containerd-shim-runsc-v1", GVISOR, "gvisor.dev/gvisor/shim"),
        # NetworkPolicy enforcement on the node (the CNI bridge has none): kube-router with
        # only its firewall controller (`--run-firewall`, no router, no service proxy)
        Component(
            "kube-router", KUBE_ROUTER, "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"
        ),
        # Built rather than taken from PyPI's kubectl wheel (1.37): kubectl supports one minor
        # of skew against the API server, and the control plane here is 1.35.
        Component("kubectl", KUBERNETES, "k8s.io/kubernetes/cmd/kubectl"),
        # The scanner the operator runs (and the tests run for real); see README "Scanning".
        Component("trivy", TRIVY, "github.com/aquasecurity/trivy/cmd/trivy"),
        # The chart's tests run `helm lint`, `helm template` and `helm install` (charts/).
        Component("helm", HELM, "helm.sh/helm/v4/cmd/helm"),
        # The OCI registry the local cluster starts (TLS from its PKI) and the OCI tests push to.
        Component("registry", REGISTRY, "github.com/distribution/distribution/v3/cmd/registry"),
    )
}
CONTROL_PLANE: tuple[str, ...] = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "registry",
)
"""What `make cluster-up` needs (with the cluster's OCI registry); the kubelet joins with the
node (sandboxed workloads)."""
NODE: tuple[str, ...] = (
    "kubelet",
    "kube-proxy",
    "runsc",
    "containerd-shim-runsc-v1",
    "kube-router",
)
"""What `up --node` needs on top of the control plane (see node.py)."""
DEFAULT_COMPONENTS = CONTROL_PLANE


# --------------------------------------------------------------------------- paths


def bin_dir(release: Release) -> Path:
    return cache_root() / "bin" / release.dir_name


def binary_path(component: str) -> Path:
    comp = _component(component)
    return bin_dir(comp.release) / comp.name


def _stamp_path(comp: Component) -> Path:
    return bin_dir(comp.release) / f".{comp.name}.stamp.json"


def _gobuild_dir() -> Path:
    return cache_root() / "gobuild"


def _component(name: str) -> Component:
    try:
        return COMPONENTS[name]
    except KeyError:
        known = ", ".join(COMPONENTS)
        raise ValueError(f"unknown component {name!r} (known: {known})") from None


# ---------------------------------------------------------------------- build keys


def _build_key(comp: Component) -> dict[str, Any]:
    """Everything that determines the binary; compared verbatim with the stamp."""
    return (
        {
            "schema": BUILD_SCHEMA,
            "component": comp.name,
            "package": comp.package,
            "release": comp.release.name,
            "version": comp.release.version,
            "tags": comp.release.tags,
            "ldflags": [*STRIP_LDFLAGS, *_version_ldflags(comp.release, build_date=None)],
            "trimpath": True,
            "cgo_enabled": "0",
            "env": [list(pair) for pair in comp.release.env],
            "host": [sys.platform, platform.machine()],
        }
        | _patches_key(comp.release)
        | _overrides_key(comp.release)
    )


def _patches_key(release: Release) -> dict[str, Any]:
    """Patched releases key on their patches (absent otherwise, so other stamps stay valid)."""
    if not release.patches:
        return {}
    digest = hashlib.sha256()
    for patch in release.patches:
        for part in (patch.module, patch.path, patch.old, patch.new):
            digest.update(part.encode() + b"\0")
    return {"patches": digest.hexdigest()[:16]}


def _overrides_key(release: Release) -> dict[str, Any]:
    """Releases with overridden dependencies key on them (absent otherwise)."""
    if not release.overrides:
        return {}
    return {"overrides": [f"{o.module}@{o.version}" for o in release.overrides]}


def _version_ldflags(release: Release, build_date: str | None) -> list[str]:
    if release is TRIVY:
        return ["-X", f"github.com/aquasecurity/trivy/pkg/version/app.ver={release.version[1:]}"]
    if release is HELM:  # `helm version`, as upstream's Makefile sets it
        return ["-X", f"helm.sh/helm/v4/internal/version.version={release.version}"]
    if release is REGISTRY:  # `registry --version`, as upstream's Makefile sets it
        package = "github.com/distribution/distribution/v3"
        return ["-X", f"{package}/version.version={release.version}",
                "-X", f"{package}/version.mainpkg={package}"]  # fmt: skip
    if release is GVISOR:  # `runsc --version`; the shim has no version variable
        return ["-X", f"gvisor.dev/gvisor/runsc/version.version={release.version}"]
    if release is KUBE_ROUTER:  # as upstream's Makefile (`git describe --tags` on the tag)
        package = "github.com/cloudnativelabs/kube-router/v2/pkg/version"
        router = ["-X", f"{package}.Version={release.version}"]
        if build_date is not None:
            router += ["-X", f"{package}.BuildDate={build_date}"]
        return router
    if release is not KUBERNETES:
        return []
    m = re.fullmatch(r"v(\d+)\.(\d+)\.\d+", release.version)
    if not m:
        raise BuildError(f"cannot parse Kubernetes version {release.version!r}")
    values = {
        "gitVersion": release.version,
        "gitMajor": m.group(1),
        "gitMinor": m.group(2),
        "gitTreeState": "clean",
    }
    if build_date is not None:
        values["buildDate"] = build_date
    flags: list[str] = []
    for key, val in values.items():
        for pkg in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version"):
            flags += ["-X", f"{pkg}.{key}={val}"]
    return flags


def _is_cached(comp: Component) -> bool:
    binary = binary_path(comp.name)
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        return False
    try:
        stamp = json.loads(_stamp_path(comp).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(stamp, dict) and stamp.get("key") == _build_key(comp)


# ------------------------------------------------------------------------- helpers


def _log(msg: str) -> None:
    print(f"[build] {msg}", file=sys.stderr, flush=True)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _go_exe() -> str:
    go = shutil.which("go")
    if go is None:
        raise BuildError("`go` not found on PATH; a Go toolchain is required to build")
    return go


def _go_env(extra: Iterable[tuple[str, str]] = ()) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    env["GOTOOLCHAIN"] = "local"  # never download toolchains
    env["GOWORK"] = "off"  # ignore any go.work above the cache dir
    env["CGO_ENABLED"] = "0"  # static binaries
    for var in ("GOOS", "GOARCH"):  # binaries are for this host
        env.pop(var, None)
    goflags = env.get("GOFLAGS", "").split()
    if not any(f.startswith("-buildvcs") for f in goflags):
        goflags.append("-buildvcs=false")
    env["GOFLAGS"] = " ".join(goflags)
    return env


def _run_capture(args: Sequence[str], cwd: Path) -> str:
    proc = subprocess.run(
        list(args), cwd=cwd, env=_go_env(), capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise BuildError(
            f"command failed ({proc.returncode}): {shlex.join(args)}\n"
            f"{_tail(proc.stderr + proc.stdout)}"
        )
    return proc.stdout


def _tail(text: str, n: int = FAILURE_TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-n:])


def _run_logged(
    args: Sequence[str],
    cwd: Path,
    log_path: Path,
    what: str,
    env: Iterable[tuple[str, str]] = (),
) -> None:
    """Run quietly into ``log_path``; on failure show the last lines and raise."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with log_path.open("w") as log:
        log.write(f"$ cd {shlex.quote(str(cwd))} && {shlex.join(args)}\n")
        log.flush()
        proc = subprocess.Popen(
            list(args), cwd=cwd, env=_go_env(env), stdout=log, stderr=subprocess.STDOUT
        )
        while True:
            try:
                rc = proc.wait(timeout=HEARTBEAT_SECONDS)
                break
            except subprocess.TimeoutExpired:
                _log(f"  ... {what} still running ({time.monotonic() - start:.0f}s)")
            except BaseException:
                proc.kill()
                proc.wait()
                raise
    if rc != 0:
        lines: collections.deque[str] = collections.deque(maxlen=FAILURE_TAIL_LINES)
        with log_path.open() as fh:
            lines.extend(line.rstrip("\n") for line in fh)
        output = "\n".join(lines)
        print(output, file=sys.stderr, flush=True)
        hint = ""
        if "GOTOOLCHAIN=local" in output and "requires go" in output:
            hint = " (the pinned sources need a newer Go than the installed one)"
        raise BuildError(f"{what} failed with exit code {rc}{hint}; full log: {log_path}")


def _parse_go_version(text: str) -> tuple[int, ...]:
    m = re.match(r"(?:go)?(\d+(?:\.\d+)*)", text)
    if not m:
        raise BuildError(f"cannot parse Go version {text!r}")
    return tuple(int(p) for p in m.group(1).split("."))


def _go_json_objects(text: str) -> Iterator[dict[str, Any]]:
    """Decode a stream of concatenated JSON objects (``go ... -json`` output)."""
    dec = json.JSONDecoder()
    i = 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return
        obj, i = dec.raw_decode(text, i)
        if isinstance(obj, dict):
            yield obj


# ------------------------------------------------------------------ helper module


@dataclass(frozen=True)
class _Prepared:
    module_dir: Path
    build_date: str | None
    go_version: str


def _prepare_module(release: Release, packages: Iterable[str]) -> _Prepared:
    go = _go_exe()
    gobuild = _gobuild_dir()
    gobuild.mkdir(parents=True, exist_ok=True)
    go_version = _run_capture([go, "env", "GOVERSION"], gobuild).strip()

    t0 = time.monotonic()
    _log(f"resolving {release.root_module}@{release.version} ...")
    modules = [release.root_module, *release.extra_modules]
    out = _run_capture(
        [go, "mod", "download", "-json", *(f"{m}@{release.version}" for m in modules)],
        gobuild,
    )
    info = {o["Path"]: o for o in _go_json_objects(out)}
    for mod in modules:
        if mod not in info or info[mod].get("Error"):
            err = info.get(mod, {}).get("Error", "not returned by go mod download")
            raise BuildError(f"cannot download {mod}@{release.version}: {err}")
    root = info[release.root_module]
    gomods = [
        json.loads(_run_capture([go, "mod", "edit", "-json", info[m]["GoMod"]], gobuild))
        for m in modules
    ]
    upstream = gomods[0]

    # The helper's go line / godebug / excludes mirror upstream's main module so
    # the build selects and behaves like an upstream build (these directives only
    # apply from the main module).
    need_go = max((str(g.get("Go") or "1.21") for g in gomods), key=_parse_go_version)
    if _parse_go_version(need_go) > _parse_go_version(go_version):
        raise BuildError(
            f"{release.root_module}@{release.version} requires go >= {need_go} but the "
            f"local toolchain is {go_version} (GOTOOLCHAIN=local); install a newer Go "
            "or pin an older release"
        )

    replaces: dict[str, str] = {}
    for gomod in gomods:
        required = {r["Path"] for r in gomod.get("Require") or []}
        for rep in gomod.get("Replace") or []:
            old, new = rep["Old"], rep["New"]
            if old.get("Version"):
                raise BuildError(f"unsupported version-specific replace upstream: {rep}")
            if new.get("Version"):  # module => module version: keep as upstream has it
                replaces.setdefault(old["Path"], f"{new['Path']} {new['Version']}")
            elif old["Path"] in required:  # local path: use the published version
                replaces.setdefault(
                    old["Path"], f"{old['Path']} {release.published_version(old['Path'])}"
                )
            # Local replaces of modules upstream does not require (etcd's
            # FORBIDDEN_DEPENDENCY guards, k8s sample modules) are irrelevant.

    module_dir = gobuild / release.dir_name
    module_dir.mkdir(parents=True, exist_ok=True)
    for override in release.overrides:
        replaces[override.module] = f"{override.module} {override.version}"
        _log(f"{override.module}: {override.version} instead of upstream's pin ({override.why})")
    replaces.update(_patched_copies(release, info, module_dir))

    lines = [
        "// Generated by e2e/localcluster/build.py; do not edit.",
        f"module wayang.local/build/{release.name}",
        "",
        f"go {need_go}",
        "",
    ]
    directives = [f"godebug {gd['Key']}={gd['Value']}" for gd in upstream.get("GoDebug") or []]
    directives += [f"exclude {ex['Path']} {ex['Version']}" for ex in upstream.get("Exclude") or []]
    if directives:
        lines += [*directives, ""]
    lines += ["require ("]
    lines += [f"\t{m} {release.version}" for m in modules]
    lines += [")", ""]
    if replaces:
        lines += ["replace (", *(f"\t{k} => {v}" for k, v in sorted(replaces.items())), ")", ""]
    _atomic_write_text(module_dir / "go.mod", "\n".join(lines))
    # Resolve and download exactly the packages to build (cheaper than `go mod
    # tidy`, which also fetches test-only and other-OS dependencies); this fills
    # go.sum so the builds below can run with -mod=readonly.
    _run_logged(
        [
            go,
            "list",
            "-mod=mod",
            "-deps",
            "-tags",
            release.tags or "",
            "-f",
            "{{.ImportPath}}",
            *packages,
        ],
        module_dir,
        _gobuild_dir() / "logs" / f"{release.dir_name}-resolve.log",
        f"resolving modules for {release.name}",
        release.env,
    )
    _check_pins(go, module_dir, gomods, set(replaces), modules)
    _log(
        f"resolving {release.root_module}@{release.version} ... done in "
        f"{time.monotonic() - t0:.0f}s"
    )

    build_date: str | None = None
    info_file = root.get("Info")
    if (release is KUBERNETES or release is KUBE_ROUTER) and info_file:
        # Reproducible buildDate: the release's publication time from the proxy.
        stamp_time = json.loads(Path(info_file).read_text()).get("Time", "")
        build_date = re.sub(r"\.\d+Z$", "Z", stamp_time) or "1970-01-01T00:00:00Z"
    return _Prepared(module_dir=module_dir, build_date=build_date, go_version=go_version)


def _patched_copies(release: Release, info: dict[str, Any], module_dir: Path) -> dict[str, str]:
    """Copy each module the release patches, patch it, and return its ``replace`` targets."""
    folder = module_dir / "patched"
    shutil.rmtree(folder, ignore_errors=True)
    targets: dict[str, str] = {}
    for patch in release.patches:
        if patch.module not in info:
            raise BuildError(f"patch for {patch.module}, which {release.name} does not build")
        copy = folder / patch.module
        if patch.module not in targets:
            shutil.copytree(info[patch.module]["Dir"], copy, copy_function=shutil.copyfile)
            for path in [copy, *copy.rglob("*")]:  # the module cache's copies are read-only
                path.chmod(0o755 if path.is_dir() else 0o644)
            targets[patch.module] = f"./{copy.relative_to(module_dir)}"
        target = copy / patch.path
        text = target.read_text()
        if text.count(patch.old) != 1:
            raise BuildError(
                f"{patch.module}/{patch.path}@{release.version}: the code to patch is not there "
                f"exactly once; re-check the patch ({patch.why[:60]}...)"
            )
        target.write_text(text.replace(patch.old, patch.new))
        _log(f"patched {patch.module}/{patch.path} (a copy; the module cache is untouched)")
    return targets


def _check_pins(
    go: str,
    module_dir: Path,
    upstream_gomods: Sequence[dict[str, Any]],
    replaced: set[str],
    roots: Sequence[str],
) -> None:
    """Warn if the helper module does not use exactly upstream's pinned versions.

    ``-mod=mod`` resolution would add a ``latest`` requirement if some imported
    package were not provided by upstream's module graph, and a dependency's
    go.mod could raise a version; either means the binary is not built from
    the same dependency set as an upstream release build.
    """
    problems: list[str] = []
    helper = json.loads(_run_capture([go, "mod", "edit", "-json"], module_dir))
    added = sorted({r["Path"] for r in helper.get("Require") or []} - set(roots))
    if added:
        problems.append(f"go added requirements not pinned upstream: {', '.join(added)}")
    expected: dict[str, set[str]] = collections.defaultdict(set)
    for gomod in upstream_gomods:
        for req in gomod.get("Require") or []:
            if req["Path"] not in replaced:
                expected[req["Path"]].add(req["Version"])
    listing = _run_capture(
        [go, "list", "-mod=mod", "-m", "-f", "{{.Path}} {{.Version}}", "all"], module_dir
    )
    for line in listing.splitlines():
        path, _, version = line.partition(" ")
        if path in expected and version not in expected[path]:
            want = "/".join(sorted(expected[path]))
            problems.append(f"{path} selected {version}, upstream pins {want}")
    for problem in problems:
        _log(f"WARNING: {problem}")


def _build_one(comp: Component, prep: _Prepared) -> None:
    release = comp.release
    out_dir = bin_dir(release)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / comp.name
    tmp = out_dir / f".{comp.name}.tmp-{os.getpid()}"
    stamp = _stamp_path(comp)
    stamp.unlink(missing_ok=True)
    ldflags = " ".join([*STRIP_LDFLAGS, *_version_ldflags(release, prep.build_date)])
    args = [
        _go_exe(), "build", "-mod=readonly", "-trimpath",
        "-tags", release.tags or "",
        f"-ldflags=all={ldflags}",
        "-o", str(tmp),
        comp.package,
    ]  # fmt: skip
    _log(f"{comp.name} {release.version} ...")
    t0 = time.monotonic()
    try:
        _run_logged(
            args,
            prep.module_dir,
            _gobuild_dir() / "logs" / f"{release.dir_name}-{comp.name}.log",
            f"building {comp.name}",
            release.env,
        )
        os.chmod(tmp, 0o755)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    elapsed = time.monotonic() - t0
    _atomic_write_text(
        stamp,
        json.dumps(
            {
                "key": _build_key(comp),
                "go_version": prep.go_version,
                "build_date": prep.build_date,
                "build_seconds": round(elapsed, 1),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            indent=2,
        )
        + "\n",
    )
    size_mb = final.stat().st_size / 1e6
    _log(f"{comp.name} {release.version} ... done in {elapsed:.0f}s ({size_mb:.0f} MB)")


# ---------------------------------------------------------------------------- API


def ensure_tool(name: str) -> Path:
    """Build (if its sources changed) one of the project's own Go programs under e2e/tools/."""
    source = TOOLS / name
    files = sorted(p for p in source.iterdir() if p.suffix in {".go", ".mod", ".sum"})
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    binary = cache_root() / "bin" / "tools" / f"{name}-{digest.hexdigest()[:16]}"
    if binary.is_file():
        return binary
    with locked(_gobuild_dir() / ".lock", _log):
        if not binary.is_file():
            binary.parent.mkdir(parents=True, exist_ok=True)
            tmp = binary.with_name(f".{binary.name}.tmp-{os.getpid()}")
            _log(f"{name} (e2e/tools) ...")
            _run_logged(
                [_go_exe(), "build", "-mod=readonly", "-trimpath", "-o", str(tmp), "."],
                source,
                _gobuild_dir() / "logs" / f"tool-{name}.log",
                f"building {name}",
            )
            os.replace(tmp, binary)
    return binary


def ensure_built(components: Iterable[str] | None = None, force: bool = False) -> dict[str, Path]:
    """Build (if needed) and return ``{component: absolute binary path}``.

    ``components`` defaults to :data:`DEFAULT_COMPONENTS`. When every requested
    binary exists with a matching stamp this only stats a few files.
    """
    names = list(dict.fromkeys(components or DEFAULT_COMPONENTS))
    comps = [_component(n) for n in names]
    result = {c.name: binary_path(c.name) for c in comps}
    if not force and all(_is_cached(c) for c in comps):
        return result

    total0 = time.monotonic()
    with locked(_gobuild_dir() / ".lock", _log):
        todo = [c for c in comps if force or not _is_cached(c)]  # re-check under lock
        releases = list(dict.fromkeys(c.release for c in todo))
        for release in releases:
            group = [c for c in todo if c.release is release]
            prep = _prepare_module(release, [c.package for c in group])
            for comp in group:
                _build_one(comp, prep)
    if todo:
        _log(f"all done in {time.monotonic() - total0:.0f}s")
    return result


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "components",
        nargs="*",
        metavar="component",
        help=f"any of: {', '.join(COMPONENTS)} (default: {' '.join(DEFAULT_COMPONENTS)})",
    )
    parser.add_argument(
        "--print-paths", action="store_true", help="print {name: path} JSON on stdout"
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    args = parser.parse_args(argv)
    for name in args.components:
        if name not in COMPONENTS:
            parser.error(f"unknown component {name!r} (choose from {', '.join(COMPONENTS)})")

    t0 = time.monotonic()
    names = args.components or list(DEFAULT_COMPONENTS)
    if not args.force and all(_is_cached(_component(n)) for n in names):
        versions = {c.release.dir_name for c in map(_component, names)}
        _log(f"cached: {' '.join(names)} ({', '.join(sorted(versions))}) in {cache_root() / 'bin'}")
        paths = {n: binary_path(n) for n in names}
    else:
        try:
            paths = ensure_built(names, force=args.force)
        except BuildError as exc:
            _log(f"FAILED after {time.monotonic() - t0:.0f}s: {exc}")
            return 1
    if args.print_paths:
        stream = out if out is not None else sys.stdout
        json.dump({k: str(v) for k, v in paths.items()}, stream, indent=2)
        stream.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

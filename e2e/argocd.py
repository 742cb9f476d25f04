"""The Argo CD health checks of `argocd/wayang.io/<Kind>/health.lua`, executed for real.

Tests must not read Lua and guess what Argo CD would show: they run each script with
`e2e/tools/luahealth`, a small Go program on gopher-lua (the interpreter Argo CD embeds) with
Argo CD's sandbox and object conversion. The unit tests feed it statuses made by the operator's
own pure core, the e2e test the live objects of a real cluster.

`configmap_data` renders the argocd-cm keys that docs/argocd.md shows, so the snippet there is
checked against the scripts rather than copied by hand; `python -m e2e.argocd` prints that
snippet (a ConfigMap patch) for the docs or for `kubectl -n argocd patch configmap argocd-cm
--type merge --patch-file`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from e2e.conftest import ROOT
from e2e.localcluster.build import ensure_tool

GROUP = "wayang.io"
HEALTH_CHECKS = ROOT / "argocd" / GROUP
"""Laid out like Argo CD's resource_customizations: `<group>/<Kind>/health.lua`."""
KINDS = ("Plugin", "PluginApproval", "ScanReport")
HEALTH_STATUSES = frozenset(
    {"Healthy", "Progressing", "Suspended", "Degraded", "Missing", "Unknown"}
)
"""What Argo CD accepts from a health script (anything else becomes Unknown)."""


def script(kind: str) -> str:
    return (HEALTH_CHECKS / kind / "health.lua").read_text()


def run(path: Path, objects: Iterable[dict[str, Any]]) -> list[dict[str, str]]:
    """Argo CD's verdict ({status, message}) of the script at `path` for each object, each in a
    fresh interpreter.

    A script error fails here with the interpreter's message: Argo CD would show an error for
    the resource's health, which a health check must never cause."""
    documents = list(objects)
    text = "".join(json.dumps(document) + "\n" for document in documents)
    result = subprocess.run(
        [str(ensure_tool("luahealth")), str(path)],
        input=text,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    verdicts: list[dict[str, str]] = [json.loads(line) for line in result.stdout.splitlines()]
    failures = [v["error"] for v in verdicts if "error" in v]
    if result.returncode != 0 or failures or len(verdicts) != len(documents):
        raise AssertionError(f"{path} failed ({result.returncode}): {failures or result.stderr}")
    return verdicts


def health(kind: str, objects: Iterable[dict[str, Any]]) -> list[dict[str, str]]:
    """The verdicts of the health check of `kind` (Plugin, PluginApproval, ScanReport)."""
    return run(HEALTH_CHECKS / kind / "health.lua", objects)


def health_of(kind: str, document: dict[str, Any]) -> dict[str, str]:
    return health(kind, [document])[0]


def configmap_key(kind: str) -> str:
    """The argocd-cm key of a health check (the `resource.customizations.health.<group_kind>`
    form, one key per kind, which Argo CD prefers over the old nested `resource.customizations`)."""
    return f"resource.customizations.health.{GROUP}_{kind}"


def configmap_data() -> dict[str, str]:
    """The argocd-cm `data` entries for the three health checks, exactly the scripts' text."""
    return {configmap_key(kind): script(kind) for kind in KINDS}


def managers_of_spec(document: dict[str, Any]) -> set[str]:
    """The field managers that own any field under `spec` (from metadata.managedFields)."""
    owners = set()
    for entry in document["metadata"].get("managedFields") or []:
        if "f:spec" in (entry.get("fieldsV1") or {}):
            owners.add(entry["manager"])
    return owners


def configmap_patch() -> str:
    """The argocd-cm snippet of docs/argocd.md, as YAML (literal blocks keep the scripts exact)."""
    lines = ["apiVersion: v1", "kind: ConfigMap", "metadata:", "  name: argocd-cm"]
    lines += ["  namespace: argocd", "data:"]
    for key, text in configmap_data().items():
        lines.append(f"  {key}: |")
        lines += [f"    {line}" if line else "" for line in text.splitlines()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(configmap_patch())

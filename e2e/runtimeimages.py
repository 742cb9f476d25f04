"""The project's images on the local node: built by runtime-images/build.py, imported into the
node's containerd, so pods find them with `imagePullPolicy: Never` (or IfNotPresent) and no
registry.

- `operator_image(node, folder)`: the operator itself, `localhost/wayang/wayang-operator:<version>`,
  what the Helm chart's Deployment runs (`image.repository` = `.repository`, `image.digest` =
  `.digest`).
- `sample_images(node, folder)`: the sample plugins on the Python runtime host, by sample name
  (`echo`, `failing`, ...).
- `sample_variant(sample, folder, **changes)`: a sample image's spec changed (another tag, label
  or entrypoint), built into an OCI layout and not imported.

The build runs as build.py's own command line (progress on stderr, the JSON on stdout), so what
the tests import is what `make images` writes. Its slow parts are cached across runs (root
filesystems, trivy, the dependency wheels; see runtime-images/README.md): a warm operator build
takes about 12 s, mostly compressing layers. The operator image is built and imported once per
process and node: the chart's tests and the image's own share one build.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.runtime_build import BUILD as BUILD_MODULE

from e2e.localcluster import node as localnode
from wayang_operator.images.oci import Image, build

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "runtime-images" / "build.py"
OPERATOR = "wayang-operator"
"""build.py's name for the operator image (`--only wayang-operator`)."""

_operators: dict[Path, tuple[localnode.ImportedImage, Path]] = {}
"""Per node (its folder): the operator image this process imported, and its OCI layout."""


def build_images(folder: Path, *only: str) -> dict[str, dict[str, Any]]:
    """Run build.py into `folder` for the images `only` names (names or patterns; all when
    empty): reference -> {digest, layout, tar, size}."""
    command = [sys.executable, str(BUILD), "--out", str(folder)]
    for name in only:
        command += ["--only", name]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=1800)
    assert result.returncode == 0, f"build.py {' '.join(only)} failed:\n{result.stderr[-4000:]}"
    built: dict[str, dict[str, Any]] = json.loads(result.stdout)
    return built


def operator_image(node: localnode.Node, folder: Path) -> localnode.ImportedImage:
    """The operator's image, built into `folder` (on the first call of this process for this
    node) and imported into the node; its `.repository`/`.digest`/`.by_digest` go in a pod spec."""
    key = node.layout.root
    if key not in _operators:
        built = build_images(folder, OPERATOR)
        ((name, info),) = built.items()
        assert name.startswith(f"localhost/wayang/{OPERATOR}:"), name
        imported = node.import_image(Path(info["tar"]))
        assert imported.digest == info["digest"], (imported, info)
        _operators[key] = (imported, Path(info["layout"]))
    return _operators[key][0]


def operator_layout(node: localnode.Node) -> Path:
    """The OCI layout of the operator image `operator_image` imported into `node`."""
    return _operators[node.layout.root][1]


def sample_images(node: localnode.Node, folder: Path) -> dict[str, localnode.ImportedImage]:
    """Every sample plugin's image, built into `folder` and imported, by sample name (`echo`)."""
    built = build_images(folder, "runtime-python", "sample-*")
    return {
        name.rsplit("/sample-", 1)[1].split(":")[0]: node.import_image(Path(info["tar"]))
        for name, info in built.items()
        if "/sample-" in name
    }


def sample_variant(sample: str, folder: Path, **changes: Any) -> Image:
    """The spec of build.py's `sample-<sample>` image with `changes` (dataclass fields: name,
    labels, entrypoint), built into `folder` (an OCI layout; nothing is imported)."""
    mirrors = (
        [os.environ["WAYANG_DEBIAN_MIRROR"]]
        if os.environ.get("WAYANG_DEBIAN_MIRROR")
        else list(BUILD_MODULE.MIRRORS)
    )
    base = BUILD_MODULE.runtime_layers(mirrors, BUILD_MODULE.DEFAULT_EPOCH, refresh=False)
    spec = dict(BUILD_MODULE.specs(base))[f"sample-{sample}"]
    if "labels" in changes:
        changes["labels"] = {**spec.labels, **changes["labels"]}
    shutil.rmtree(folder, ignore_errors=True)  # a layout of an earlier run: built again, the same
    return build(dataclasses.replace(spec, **changes), folder)


def sample_artifacts(folder: Path) -> dict[str, dict[str, str]]:
    """The echo sample's artifact of every hosted type, as `make samples` builds them (build.py
    --samples): type -> {file, digest}."""
    command = [sys.executable, str(BUILD), "--samples", "--out", str(folder)]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    assert result.returncode == 0, f"build.py --samples failed:\n{result.stderr[-4000:]}"
    built: dict[str, dict[str, str]] = json.loads(result.stdout)
    return built

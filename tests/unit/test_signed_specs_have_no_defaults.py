"""The operator signs a ScanReport's spec as it writes it; a schema default would make the API
server add a field after signing, and the operator would then take its own report for a forgery
(the demo's scans never finished when Artifact.type had `default: container`)."""

from pathlib import Path
from typing import Any

import yaml

CRD = Path(__file__).parents[2] / "crds" / "wayang.io_scanreports.yaml"


def _defaults(schema: Any, where: str) -> list[str]:
    if isinstance(schema, dict):
        found = [where] if "default" in schema else []
        for key, value in schema.items():
            found += _defaults(value, f"{where}.{key}")
        return found
    if isinstance(schema, list):
        return [f for i, item in enumerate(schema) for f in _defaults(item, f"{where}[{i}]")]
    return []


def test_the_scan_reports_signed_spec_gets_no_defaults_from_the_api_server() -> None:
    crd = yaml.safe_load(CRD.read_text())
    for version in crd["spec"]["versions"]:
        spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
        assert _defaults(spec, "spec") == []

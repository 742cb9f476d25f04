"""`wayang validate` as a user runs it: files, folders, stdin, text and JSON output, exit codes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tests import documents as d
from tests.documents import mutated

from wayang_operator.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["validate", *args])
    return code, capsys.readouterr().out


def write(tmp_path: Path, name: str, *documents: object) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


def test_examples_are_valid(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run([str(EXAMPLES), "--verbose"], capsys)
    assert code == 0, out
    assert "0 invalid" in out


def test_examples_cover_every_sandbox_level_and_implementation_type() -> None:
    plugins = [
        yaml.safe_load(path.read_text())
        for path in sorted(EXAMPLES.rglob("*.yaml"))
        if "kind: Plugin\n" in path.read_text()
    ]
    assert {p["spec"].get("sandboxLevel", "semi-trusted") for p in plugins} == {
        "trusted",
        "semi-trusted",
        "untrusted",
    }
    assert {p["spec"]["implementation"]["type"] for p in plugins} == {
        "maven",
        "wasm",
        "container",
        "python",
        "jar",
    }
    kinds = {d["kind"] for p in EXAMPLES.rglob("*.yaml") for d in yaml.safe_load_all(p.read_text())}
    assert {"PluginApproval", "PluginPolicy"} <= kinds


def test_invalid_document_names_file_line_document_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = mutated(d.plugin(), "spec.version", "1.0")
    path = write(tmp_path, "plugins.yaml", d.plugin(), bad)
    code, out = run([str(path)], capsys)
    assert code == 1
    (line,) = [line for line in out.splitlines() if "spec.version" in line]
    assert line.startswith(f"{path}:")
    assert "document 2" in line
    assert "Plugin data-processor" in line
    assert "semantic version" in line
    assert "'1.0'" in line
    assert "1 valid, 1 invalid" in out


def test_json_output_is_machine_readable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = mutated(d.plugin(), "spec.implementation.digest", "latest")
    path = write(
        tmp_path,
        "p.yaml",
        bad,
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}},
    )
    code, out = run([str(path), "--output", "json"], capsys)
    report = json.loads(out)
    assert code == 1
    assert report["valid"] is False
    assert report["summary"] == {"valid": 0, "invalid": 1, "skipped": 1}
    first = report["documents"][0]
    assert first["document"] == 1
    assert first["kind"] == "Plugin"
    assert first["apiVersion"] == "wayang.io/v1alpha1"
    assert first["problems"][0]["path"] == "spec.implementation.digest"
    assert first["problems"][0]["line"] > 1
    assert report["documents"][1]["outcome"] == "skipped"


def test_stdin_yaml_and_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for text in (yaml.safe_dump(d.plugin()), json.dumps(d.plugin())):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
        code, out = run(["-"], capsys)
        assert code == 0, out
        assert "1 valid" in out


def test_kind_list_is_opened(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    listing = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [d.plugin(), mutated(d.approval(), "spec.decision", "Maybe")],
    }
    path = tmp_path / "list.json"
    path.write_text(json.dumps(listing))
    code, out = run([str(path)], capsys)
    assert code == 1
    assert "items[1]" in out
    assert "spec.decision" in out


def test_folders_are_walked_and_other_kinds_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "nested" / ".git").mkdir(parents=True)
    write(tmp_path / "nested", "a.yml", d.plugin())
    write(tmp_path / "nested" / ".git", "ignored.yaml", {"kind": "Plugin"})
    write(
        tmp_path,
        "deploy.yaml",
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}},
    )
    (tmp_path / "values.yaml").write_text("replicas: 2\n")
    (tmp_path / "README.md").write_text("# not a manifest\n")
    code, out = run([str(tmp_path), "-v"], capsys)
    assert code == 0, out
    assert "3 document(s) in 3 file(s): 1 valid, 0 invalid, 2 skipped" in out
    assert ".git" not in out


def test_missing_path_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(["/nonexistent/plugins"], capsys)
    assert code == 1
    assert "no such file or directory" in out


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"kind": "Plugin", "metadata": {"name": "x"}}, "apiVersion: required field is missing"),
        ({"apiVersion": "wayang.io/v2", "kind": "Plugin"}, "this release serves"),
        ({"apiVersion": "wayang.io/v1alpha1", "kind": "Widget"}, "unknown kind 'Widget'"),
        (mutated(d.plugin(), "spec.sandboxlevel", "trusted"), "did you mean 'sandboxLevel'"),
        (mutated(d.plugin(), "spec.status", "approved"), "reported by the operator"),
    ],
)
def test_document_level_mistakes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], document: dict[str, object], expected: str
) -> None:
    code, out = run([str(write(tmp_path, "x.yaml", document))], capsys)
    assert code == 1
    assert expected in out


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["validate"])
    assert exit_info.value.code == 2


def test_console_script_runs_without_traceback(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_bytes(
        b'a: &a ["x","x","x","x","x","x","x","x","x","x"]\n'
        + b"".join(
            f"l{i}: &l{i} [{','.join(['*a' if i == 0 else f'*l{i - 1}'] * 10)}]\n".encode()
            for i in range(8)
        )
    )
    (tmp_path / "bin.json").write_bytes(bytes(range(256)))
    wayang = Path(sys.executable).parent / "wayang"
    result = subprocess.run(
        [wayang, "validate", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert "alias bomb" in result.stdout
    assert "binary content" in result.stdout


def test_a_thousand_manifests_validate_quickly(tmp_path: Path) -> None:
    """Not a timing assertion (see `make bench`): a smoke run that the folder path scales."""
    for index in range(1000):
        write(tmp_path, f"p{index:04}.yaml", mutated(d.plugin(), "metadata.name", f"p{index}"))
    wayang = Path(sys.executable).parent / "wayang"
    result = subprocess.run(
        [wayang, "validate", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout[-2000:]
    assert "1000 valid" in result.stdout


def test_what_admission_refuses_beyond_the_schema_is_refused_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An inline sensitive value (never echoed) and a container pulled from elsewhere than its
    repository names: the webhook's refusals, found before the manifest reaches a cluster."""
    plugin = d.plugin()
    plugin["spec"]["properties"] = [{"name": "apiKey", "type": "string", "sensitive": True}]
    plugin["spec"]["configuration"] = {"apiKey": "sk-canary-77"}
    plugin["spec"]["implementation"] = {
        "type": "container",
        "coordinate": "evil.example.com/echo",
        "repository": "oci://registry.example.com/team",
        "digest": d.SHA256,
    }
    code, out = run([str(write(tmp_path, "p.yaml", plugin))], capsys)
    assert code == 1
    assert "spec.configuration.apiKey: property 'apiKey' is sensitive" in out
    assert "sk-canary-77" not in out
    assert "spec.implementation.repository: the image is pulled from the coordinate" in out
    plugin["spec"]["configuration"] = {"apiKey": {"secretKeyRef": {"name": "llm", "key": "k"}}}
    plugin["spec"]["implementation"]["coordinate"] = "registry.example.com/team/echo:1.0"
    assert run([str(write(tmp_path, "ok.yaml", plugin))], capsys)[0] == 0


def test_the_contract_is_checked_offline_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Configuration against the properties, and each property's celExpression, as the
    operator's Validated gate checks them: a bad configuration no longer passes offline."""
    plugin = d.plugin()
    plugin["spec"]["properties"] = [
        {"name": "mode", "type": "string", "validation": {"celExpression": "self in ['a', 'b']"}},
        {"name": "limit", "type": "integer"},
    ]
    plugin["spec"]["configuration"] = {"mode": "c", "limit": "ten", "extra": 1}
    code, out = run([str(write(tmp_path, "p.yaml", plugin))], capsys)
    assert code == 1
    assert "spec.configuration.mode: 'c' fails validation.celExpression" in out
    assert "spec.configuration.limit: 'ten' is not of type integer" in out
    assert "spec.configuration.extra: no property of this name is declared" in out
    plugin["spec"]["configuration"] = {"mode": "a", "limit": 10}
    assert run([str(write(tmp_path, "ok.yaml", plugin))], capsys)[0] == 0

"""`wayang keygen` and `wayang sign` as a publisher's CI uses them, checked by the verifier."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest
import yaml
from tests.documents import mutated

from wayang_operator.api.descriptor import PluginDescriptor
from wayang_operator.api.resources import TrustedKey
from wayang_operator.cli import main
from wayang_operator.core import signing

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plugins" / "jwt-auth-python.yaml"


@pytest.mark.parametrize("algorithm", ["ed25519", "ecdsa-p256"])
def test_keygen_then_sign_verifies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], algorithm: str
) -> None:
    assert main(["keygen", "release", "-a", algorithm, "-d", str(tmp_path)]) == 0
    entry = yaml.safe_load(capsys.readouterr().out)[0]
    assert stat.S_IMODE((tmp_path / "release.key").stat().st_mode) == 0o600
    manifest = tmp_path / "plugin.yaml"
    shutil.copy(EXAMPLE, manifest)
    assert main(["sign", "-k", str(tmp_path / "release.key"), "--in-place", str(manifest)]) == 0
    plugin = yaml.safe_load(manifest.read_text())
    spec = PluginDescriptor.model_validate(plugin["spec"])
    assert spec.signature is not None
    assert spec.signature.startswith("release:")
    verdict = signing.verify(spec, [TrustedKey.model_validate(entry)])
    assert verdict.verified, verdict.reason
    tampered = PluginDescriptor.model_validate(mutated(plugin["spec"], "version", "2.1.4"))
    assert not signing.verify(tampered, [TrustedKey.model_validate(entry)]).verified


def test_keygen_does_not_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keygen", "k", "-d", str(tmp_path)]) == 0
    before = (tmp_path / "k.key").read_bytes()
    assert main(["keygen", "k", "-d", str(tmp_path)]) == 1
    assert "use --force" in capsys.readouterr().err
    assert (tmp_path / "k.key").read_bytes() == before


def test_sign_refuses_invalid_manifests_and_bad_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["keygen", "k", "-d", str(tmp_path)])
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("version: 2.1.3", "version: '2.1'"))
    assert main(["sign", "-k", str(tmp_path / "k.key"), str(bad)]) == 1
    assert "spec.version" in capsys.readouterr().err
    assert main(["sign", "-k", str(tmp_path / "k.pub"), str(EXAMPLE)]) == 1
    assert "cannot use" in capsys.readouterr().err

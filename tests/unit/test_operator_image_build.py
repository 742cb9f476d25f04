"""The pure parts of the operator image's build (runtime-images/build.py): the lock read from pip's
report, the dependency layer's cache key, the layer tars, the console-script launchers and the
choice of images. The build itself (mmdebstrap, pip, trivy) is exercised by
e2e/test_operator_image.py, which runs the image on the local node."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from tests.runtime_build import BUILD

ROOT = Path(__file__).resolve().parents[2]


def wheel(name: str, version: str, sha: str = "ab" * 32, **extra: Any) -> dict[str, Any]:
    info: dict[str, Any] = {
        "url": f"https://files.example/{name}-{version}-py3-none-any.whl",
        "archive_info": {"hashes": {"sha256": sha}},
    }
    info.update(extra)
    return {"metadata": {"name": name, "version": version}, "download_info": info}


def test_the_lock_is_every_resolved_wheel_sorted_by_canonical_name() -> None:
    legacy = wheel("Zeta_Pkg", "1.0")
    legacy["download_info"]["archive_info"] = {"hash": "sha256=" + "cd" * 32}
    pins = BUILD.pins_from_report({"install": [legacy, wheel("PyYAML", "6.0.3"), wheel("a", "2")]})
    assert [pin.name for pin in pins] == ["a", "PyYAML", "Zeta_Pkg"]
    assert pins[2].sha256 == "cd" * 32  # pip's older single-hash form
    assert pins[1].requirement() == f"PyYAML==6.0.3 --hash=sha256:{'ab' * 32}"


@pytest.mark.parametrize(
    "item",
    [
        wheel("sdist", "1.0", url="https://files.example/sdist-1.0.tar.gz"),
        wheel("nohash", "1.0", archive_info={}),
    ],
)
def test_a_dependency_that_is_not_a_hashed_wheel_fails_the_build(item: dict[str, Any]) -> None:
    """An sdist would be built on the builder (not reproducible, maybe not for the image's
    Python); a wheel without a hash cannot be installed with --require-hashes."""
    with pytest.raises(BUILD.BuildError, match=item["metadata"]["name"]):
        BUILD.pins_from_report({"install": [item]})


def test_resolving_nothing_fails_the_build() -> None:
    with pytest.raises(BUILD.BuildError):
        BUILD.pins_from_report({"install": []})


def test_the_dependency_layer_key_follows_what_was_resolved() -> None:
    """The layer is rebuilt when a version, a wheel's hash, the file times or the bytecode's
    Python change, and only then."""
    pins = BUILD.pins_from_report({"install": [wheel("a", "1"), wheel("b", "2")]})
    key = BUILD.dependencies_key(pins, 1704067200, "3.11")
    assert key == BUILD.dependencies_key(list(pins), 1704067200, "3.11")
    upgraded = BUILD.pins_from_report({"install": [wheel("a", "1.1"), wheel("b", "2")]})
    rebuilt = BUILD.pins_from_report({"install": [wheel("a", "1", "ef" * 32), wheel("b", "2")]})
    others = {
        BUILD.dependencies_key(upgraded, 1704067200, "3.11"),
        BUILD.dependencies_key(rebuilt, 1704067200, "3.11"),
        BUILD.dependencies_key(pins, 1704067201, "3.11"),
        BUILD.dependencies_key(pins, 1704067200, None),
    }
    assert key not in others
    assert len(others) == 4


def test_the_wheels_are_for_bookworms_interpreter() -> None:
    options = BUILD.pip_platform_options()
    assert "--only-binary=:all:" in options
    assert "--python-version=3.11" in options
    assert "--abi=cp311" in options
    platforms = {o.removeprefix("--platform=") for o in options if o.startswith("--platform=")}
    assert {"manylinux_2_17_x86_64", "manylinux_2_28_x86_64", "manylinux_2_36_x86_64"} <= platforms
    assert "manylinux_2_37_x86_64" not in platforms  # bookworm's glibc is 2.36
    # The legacy aliases too: wasmtime ships its library only as manylinux1.
    assert {"manylinux1_x86_64", "manylinux2010_x86_64", "manylinux2014_x86_64"} <= platforms


def test_layers_are_byte_for_byte_the_same_and_owned_as_asked(tmp_path: Path) -> None:
    (tmp_path / "tree" / "pkg").mkdir(parents=True)
    (tmp_path / "tree" / "pkg" / "mod.py").write_text("x = 1\n")
    tool = tmp_path / "tree" / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o775)
    entries = [
        *BUILD.tree_entries(tmp_path / "tree", "usr/local/lib"),
        BUILD.TarEntry("var/cache/wayang", None, 0o755, 65532),
        BUILD.TarEntry("/usr/local/bin/hello", b"hello\n", 0o755),
    ]
    first = BUILD.write_layer(tmp_path / "a.tar", entries, 1704067200)
    tool.touch()  # file times on disk do not matter
    second = BUILD.write_layer(tmp_path / "b.tar", reversed(entries), 1704067200)
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as tar:
        members = {member.name: member for member in tar.getmembers()}
    assert list(members) == sorted(members), "parents first, in a stable order"
    assert {"usr", "usr/local", "usr/local/lib", "var", "var/cache"} <= set(members)
    assert members["usr/local/lib/tool"].mode == 0o755
    assert members["usr/local/lib/pkg/mod.py"].mode == 0o644
    assert (members["var/cache/wayang"].uid, members["var/cache/wayang"].isdir()) == (65532, True)
    assert members["var/cache"].uid == 0
    assert {member.mtime for member in members.values()} == {1704067200}


def test_console_scripts_run_the_entry_point_and_exit_with_its_result(tmp_path: Path) -> None:
    scripts = BUILD.console_scripts(
        "[console_scripts]\nWayang-Tool = fakepkg.cli:main\n\n[other]\nx = y:z\n"
    )
    assert list(scripts) == ["Wayang-Tool"]  # names keep their case
    script = scripts["Wayang-Tool"]
    assert script.startswith(b"#!/usr/bin/python3\n")
    (tmp_path / "fakepkg").mkdir()
    (tmp_path / "fakepkg" / "__init__.py").write_text("")
    (tmp_path / "fakepkg" / "cli.py").write_text("def main():\n    print('ran')\n    return 3\n")
    (tmp_path / "launcher").write_bytes(script)
    ran = subprocess.run(
        [sys.executable, str(tmp_path / "launcher")],
        cwd=tmp_path, capture_output=True, text=True, check=False,
        env={"PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    assert (ran.returncode, ran.stdout) == (3, "ran\n"), ran.stderr


def test_a_console_script_that_is_not_module_function_fails() -> None:
    with pytest.raises(BUILD.BuildError, match="broken"):
        BUILD.console_scripts("[console_scripts]\nbroken = just_a_module\n")


def test_the_image_entrypoint_is_a_console_script_of_the_project() -> None:
    scripts = BUILD.pyproject()["scripts"]
    (entrypoint,) = BUILD.OPERATOR_ENTRYPOINT
    assert entrypoint == f"/usr/local/bin/{BUILD.OPERATOR}"
    assert scripts[BUILD.OPERATOR] == "wayang_operator.controller.main:main"
    assert (
        BUILD.console_scripts(
            "[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in scripts.items())
        ).keys()
        == scripts.keys()
    )


def test_only_chooses_images_by_name_or_pattern() -> None:
    everything = BUILD.chosen(None)
    assert everything[0] == "runtime-python"
    assert everything[-1] == "wayang-operator"
    assert "sample-echo" in everything
    assert BUILD.chosen(["wayang-operator"]) == ["wayang-operator"]
    assert BUILD.chosen(["runtime-jvm"]) == ["runtime-jvm"]
    samples = BUILD.chosen(["runtime-python", "sample-*"])
    assert "wayang-operator" not in samples
    assert samples == [name for name in everything[:-1] if name != "runtime-jvm"]
    with pytest.raises(BUILD.BuildError, match="no such image"):
        BUILD.chosen(["operator"])


def test_the_operator_environment_points_at_the_volumes_and_the_bundled_trivy() -> None:
    env = dict(item.split("=", 1) for item in BUILD.OPERATOR_ENV)
    assert env["HOME"] == "/tmp"
    assert env["WAYANG_TRIVY"] == "/usr/local/bin/trivy"
    assert env["WAYANG_SCAN_CACHE_DIR"].startswith(BUILD.SCAN_CACHE + "/")
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"

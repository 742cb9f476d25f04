"""`wayang-operator` answers --help and --version without starting (an image's smoke check).

Run as a process: importing the entry point registers the admission handlers in kopf's default
registry, which the in-process handler tests of the same session run without."""

from __future__ import annotations

import subprocess
import sys

import pytest

from wayang_operator import __version__


def operator(*args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from wayang_operator.controller.main import main; main(sys.argv[1:])"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize(("flag", "expected"), [("--version", __version__), ("--help", "WAYANG_")])
def test_flags_answer_and_exit(flag: str, expected: str) -> None:
    answered = operator(flag)
    assert answered.returncode == 0, answered.stderr
    assert expected in answered.stdout


def test_an_unknown_argument_is_refused() -> None:
    refused = operator("--namespace", "x")
    assert refused.returncode == 2
    assert "unrecognized arguments" in refused.stderr

"""examples/plugins/echo-<type>.yaml are made from the samples' descriptors by build.py (`make
manifests`): one runnable Plugin per implementation type, the one docs/types.md (and so `make
demo`) pushes, pins, approves and calls. A sample that changes without its example is caught
here."""

from __future__ import annotations

from pathlib import Path

import yaml
from tests.runtime_build import BUILD

from wayang_operator.api.descriptor import ImplementationType

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "plugins"


def test_the_examples_are_what_build_py_makes_from_the_samples() -> None:
    made = BUILD.example_manifests()
    stale = [name for name, text in made.items() if (EXAMPLES / name).read_text() != text]
    assert not stale, f"{stale} differ from the samples: run `make manifests`"


def test_there_is_one_echo_example_per_implementation_type_pinned_to_nothing_yet() -> None:
    kinds = {}
    for name, text in BUILD.example_manifests().items():
        implementation = yaml.safe_load(text)["spec"]["implementation"]
        kinds[implementation["type"]] = name
        assert implementation["digest"] == BUILD.UNPINNED, "pinned by `wayang push --pin`"
    assert set(kinds) == {kind.value for kind in ImplementationType}

"""Benchmark: `wayang validate` over a GitOps folder of 1,000 manifests.

The baseline, measured in the same run on the same files, is the least any validator must do:
read every file and parse it with libyaml (`yaml.load(..., CSafeLoader)`). The ratio says what
the safety checks, line mapping and model validation cost on top of parsing. The whole command
(process start included) is timed too, since that is what a pre-commit hook pays.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from wayang_operator.manifests.sources import load_paths
from wayang_operator.manifests.validate import Outcome, results_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FILES = 1000
ROUNDS = 5


def make_corpus(folder: Path) -> None:
    """1,000 files cycled from the examples, each renamed so no two documents are identical."""
    sources = sorted(EXAMPLES.rglob("*.yaml"))
    for index in range(FILES):
        text = sources[index % len(sources)].read_text()
        text = text.replace("  name: ", f"  name: n{index}-", 1)
        (folder / f"m{index:04}.yaml").write_text(text)


def best_of(action: Callable[[], object]) -> float:
    timings = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return min(timings)


def baseline(folder: Path) -> None:
    for path in sorted(folder.iterdir()):
        list(yaml.load_all(path.read_bytes(), Loader=yaml.CSafeLoader))


def in_process(folder: Path) -> None:
    results = [r for loaded in load_paths([str(folder)]) for r in results_for(loaded)]
    if len(results) != FILES or any(r.outcome is not Outcome.VALID for r in results):
        raise RuntimeError("the benchmark corpus must be valid, or the timing means nothing")


def command(folder: Path) -> None:
    wayang = Path(sys.executable).parent / "wayang"
    subprocess.run([wayang, "validate", str(folder)], check=True, capture_output=True)


def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        make_corpus(folder)
        base = best_of(lambda: baseline(folder))
        core = best_of(lambda: in_process(folder))
        whole = best_of(lambda: command(folder))
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        command(folder)
        peak_mib = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    rows = [
        ("baseline: read + libyaml parse", base, 1.0),
        ("wayang validate (in process)", core, core / base),
        ("wayang validate (whole command)", whole, whole / base),
    ]
    print(f"validate {FILES} manifests, best of {ROUNDS} rounds")  # noqa: T201
    for label, seconds, ratio in rows:
        print(f"  {label:34} {seconds * 1000:8.1f} ms   x{ratio:5.2f} of baseline")  # noqa: T201
    print(f"  per manifest (whole command)       {whole / FILES * 1e6:8.1f} us")  # noqa: T201
    print(f"  peak RSS of the command            {peak_mib:8.1f} MiB")  # noqa: T201


if __name__ == "__main__":
    main()

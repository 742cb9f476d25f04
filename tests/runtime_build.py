"""runtime-images/build.py as a module, for the tests that build artifacts and images with it.

build.py is a script, not a package module: it is loaded here once from its file (registered in
no sys.modules entry of its own), and every test module that needs it imports `BUILD` from here.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("runtime_build", ROOT / "runtime-images/build.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUILD = _load()

"""Sample plugin `echo`: its input text upper-cased, with the suffix property, and a counter.

The counter counts the calls this worker process has served: with warm workers
(WAYANG_REUSE_WORKERS=true) it grows, with a fresh process per call it is always 1.
"""

from __future__ import annotations

import itertools
from typing import Any

_calls = itertools.count(1)


def execute(inputs: dict[str, Any], properties: dict[str, Any]) -> dict[str, Any]:
    text = str(inputs["text"]).upper() + str(properties.get("suffix", ""))
    return {"text": text, "count": next(_calls)}

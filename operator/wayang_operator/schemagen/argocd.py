"""The reason and phase tables of the Argo CD health check for Plugins, generated from the one
reasons table (core/reasons.py), so the Lua that Argo CD runs cannot drift from the operator.

    python -m wayang_operator.schemagen.argocd argocd/wayang.io/Plugin/health.lua

Only the text between the markers BEGIN and END is replaced; the logic around it is written by
hand (tests/unit/argocd runs it in gopher-lua against the operator's own statuses).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..core.reasons import PHASE_HEALTH, REASONS

BEGIN = "-- BEGIN GENERATED: python -m wayang_operator.schemagen.argocd (from core/reasons.py)"
END = "-- END GENERATED"


def render() -> str:
    lines = [
        BEGIN,
        "-- Every condition reason the operator writes, and its health.",
        "local REASONS = {",
    ]
    lines += [f'  {reason.value} = "{about.health.value}",' for reason, about in REASONS.items()]
    lines += ["}", "", "-- Every phase, for a status without conditions.", "local PHASES = {"]
    lines += [f'  {phase.value} = "{health.value}",' for phase, health in PHASE_HEALTH.items()]
    lines += ["}", END]
    return "\n".join(lines)


def regenerate(script: str) -> str:
    begin, end = script.index(BEGIN), script.index(END)
    return script[:begin] + render() + script[end + len(END) :]


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        sys.stderr.write("usage: python -m wayang_operator.schemagen.argocd HEALTH.lua\n")
        return 2
    path = Path(args[0])
    path.write_text(regenerate(path.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

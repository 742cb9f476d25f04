"""`python -m wayang_operator.schemagen [ROOT]`: regenerate crds/ and schemas/ under ROOT."""

from __future__ import annotations

import sys
from pathlib import Path

from .render import write_all


def main() -> int:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd()
    changed = write_all(root)
    for relative in changed:
        print(f"wrote {relative}")  # noqa: T201 - this is the command's output
    print(f"manifests: {len(changed)} file(s) changed")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())

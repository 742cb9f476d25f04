"""The `wayang` command (also installed as `kubectl-wayang`): one entry point, a subcommand each.

Subcommands import their own dependencies lazily so `wayang validate` in a pre-commit hook starts
fast and never loads a Kubernetes client.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from . import audit, keys, scan, validate

INTERNAL_ERROR = 3
"""Exit code for a bug in wayang itself (0: valid, 1: invalid input, 2: usage)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wayang",
        description="Govern Wayang plugins: validate and sign manifests before they reach a "
        "cluster.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    validate.register(commands)
    keys.register(commands)
    scan.register(commands)
    audit.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `wayang validate ... | head`: the reader left; that is not an error of ours.
        sys.stderr.close()
        return 0
    except Exception as error:
        print(f"wayang: internal error: {type(error).__name__}: {error}", file=sys.stderr)
        return INTERNAL_ERROR
    return code

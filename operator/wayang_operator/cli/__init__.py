"""The `wayang` command (also installed as `kubectl-wayang`): one entry point, a subcommand each.

Subcommands import their own dependencies lazily so `wayang validate` in a pre-commit hook starts
fast and never loads a Kubernetes client.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from . import validate


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wayang",
        description="Govern Wayang plugins: validate manifests before they reach a cluster.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    validate.register(commands)
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
    return code

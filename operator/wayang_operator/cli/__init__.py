"""The `wayang` command (also installed as `kubectl-wayang`): one entry point, a subcommand each.

Subcommands import their own dependencies lazily so `wayang validate` in a pre-commit hook starts
fast and never loads a Kubernetes client. `--help` lists the subcommands in groups (GROUPS): the
cluster verbs a person runs through kubectl, the publisher's offline tools, the audit log; a
subcommand missing from GROUPS fails a test, so none is ever left out of the help.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .. import __version__
from . import audit, call, keys, plugins, push, scan, validate

INTERNAL_ERROR = 3
"""Exit code for a bug in wayang itself (0: valid, 1: invalid input, 2: usage)."""

GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Plugins in a cluster (kubectl wayang ...)",
        ("get", "explain", "approve", "reject", "revoke"),
    ),
    ("Before the cluster (a publisher's CI)", ("validate", "keygen", "sign", "scan", "push")),
    ("The audit log", ("audit",)),
    ("Calling plugins (the engine SDK, in a cluster or without one)", ("call",)),
)


def _prog(argv0: str) -> str:
    """`kubectl wayang` when kubectl runs us as its plugin `kubectl-wayang`, else `wayang`."""
    return "kubectl wayang" if os.path.basename(argv0) == "kubectl-wayang" else "wayang"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or _prog(sys.argv[0]),
        description="Govern Wayang plugins: list, explain and approve them in a cluster;\n"
        "validate, sign and scan them before they get there; verify the audit log.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    plugins.add_global_options(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    plugins.register(commands)
    validate.register(commands)
    keys.register(commands)
    scan.register(commands)
    push.register(commands)
    audit.register(commands)
    call.register(commands)
    helps = {action.dest: action.help or "" for action in commands._choices_actions}
    width = max(len(name) for name in helps)
    sections = []
    for title, names in GROUPS:
        lines = [f"  {name.ljust(width)}  {helps[name]}" for name in names if name in helps]
        sections.append(f"{title}:\n" + "\n".join(lines))
    parser.epilog = "\n\n".join(sections) + f"\n\nRun '{parser.prog} COMMAND --help' for more."
    commands._choices_actions.clear()  # listed by group in the epilog instead
    commands.help = "one of the commands below"
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

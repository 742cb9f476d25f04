"""`wayang validate PATH...`: check manifests offline, for GitOps CI and pre-commit.

Exit codes: 0 when every wayang.io document is valid (other documents are skipped), 1 when any
document is invalid or any path cannot be read, 2 for usage errors (argparse).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import asdict
from typing import Any, TextIO

from ..manifests.sources import load_paths
from ..manifests.validate import Outcome, Result, results_for


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "validate",
        help="validate Plugin, PluginApproval, PluginPolicy and ScanReport manifests",
        description="Validate wayang.io manifests in files, folders (recursively: *.yaml, *.yml, "
        "*.json) or standard input ('-'). Documents of other API groups are skipped.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="file, folder, or - for stdin")
    parser.add_argument(
        "-o",
        "--output",
        choices=("text", "json"),
        default="text",
        help="output format (default: text)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also list valid and skipped documents"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    results = [result for loaded in load_paths(args.paths) for result in results_for(loaded)]
    elapsed = time.monotonic() - started
    if args.output == "json":
        _print_json(results, sys.stdout)
    else:
        _print_text(results, sys.stdout, verbose=args.verbose, elapsed=elapsed)
    return 1 if any(result.outcome is Outcome.INVALID for result in results) else 0


def _where(result: Result, line: int | None, column: int | None) -> str:
    where = result.source
    if line is not None:
        where += f":{line}"
        if column is not None:
            where += f":{column}"
    return where


def _subject(result: Result) -> str:
    parts = []
    if result.document is not None:
        parts.append(
            f"document {result.document}"
            + (f" items[{result.item}]" if result.item is not None else "")
        )
    if result.kind:
        name = result.name or "<no name>"
        parts.append(
            f"{result.kind} {result.namespace}/{name}"
            if result.namespace
            else f"{result.kind} {name}"
        )
    return ", ".join(parts)


def _print_text(results: list[Result], out: TextIO, *, verbose: bool, elapsed: float) -> None:
    for result in results:
        subject = _subject(result)
        if result.outcome is Outcome.INVALID:
            for problem in result.problems:
                where = _where(result, problem.line, problem.column)
                field = f"{problem.path}: " if problem.path else ""
                out.write(f"{where}: {subject}: {field}{problem.message}\n")
        elif verbose:
            detail = f" ({result.reason})" if result.reason else ""
            out.write(
                f"{_where(result, result.line, None)}: {subject}: {result.outcome.value}{detail}\n"
            )
    counts = Counter(result.outcome for result in results)
    sources = len({result.source for result in results})
    out.write(
        f"{len(results)} document(s) in {sources} file(s): {counts[Outcome.VALID]} valid, "
        f"{counts[Outcome.INVALID]} invalid, {counts[Outcome.SKIPPED]} skipped ({elapsed:.2f}s)\n"
    )


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _print_json(results: list[Result], out: TextIO) -> None:
    counts = Counter(result.outcome.value for result in results)
    documents = []
    for result in results:
        entry = {_camel(key): value for key, value in asdict(result).items() if value is not None}
        entry["outcome"] = result.outcome.value
        entry["problems"] = [
            {key: value for key, value in asdict(problem).items() if value is not None}
            for problem in result.problems
        ]
        documents.append(entry)
    summary = {outcome.value: counts[outcome.value] for outcome in Outcome}
    report = {
        "valid": counts[Outcome.INVALID.value] == 0,
        "summary": summary,
        "documents": documents,
    }
    json.dump(report, out, indent=2)
    out.write("\n")

"""`wayang call` / `kubectl wayang call`: call a plugin the way the Wayang engine does, through
the engine SDK (wayang_client), with the plugin's own errorHandling applied: retries with
backoff, the circuit breaker, the fallback.

Where the plugin is:

- `--endpoint URL`: a runtime host at URL (the seed's default errorHandling applies);
- `--descriptor FILE --endpoint URL`: the same, with the descriptor's errorHandling and ports;
- `--index FILE PLUGIN`: a plugin index file (the JSON list the operator publishes);
- `PLUGIN -n NS` (none of the above): the cluster's plugin index (ConfigMap
  wayang-plugin-index, credentials as kubectl finds them), called through the API server's
  service proxy, so it works from outside the cluster.

Inputs as JSON (`--inputs '{"text": "hi"}'`) and/or `-i KEY=VALUE` (VALUE read as JSON when it
is JSON, else as a string); properties alike (`--properties`, `-p`). The output, or the
ErrorPayload, is printed as JSON (`-o yaml` for YAML). Exit codes: 0 the success port, 1 the
error port (or no plugin reached: one line on stderr), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from wayang_client import Client, DiscoveryError, PluginEntry, PluginIndex

from . import plugins, render

FAILED = 1
USAGE = 2


class UsageError(Exception):
    pass


def register(commands: Any) -> None:
    call = commands.add_parser(
        "call",
        help="call a plugin as the engine does (retries, breaker, fallback); print its output",
        description="Call a plugin's POST /execute through the engine SDK, applying its "
        "errorHandling (retries with backoff, circuit breaker, fallback), and print the "
        "output or the ErrorPayload. Without --endpoint, --descriptor or --index the plugin "
        "is found in the cluster's plugin index and called through the API server's service "
        "proxy.",
    )
    call.add_argument(
        "plugin", nargs="?", metavar="PLUGIN", help="the Plugin's name or id in the index"
    )
    where = call.add_argument_group("where the plugin is (default: the cluster's plugin index)")
    where.add_argument("--endpoint", metavar="URL", help="the runtime host's URL")
    where.add_argument(
        "--descriptor",
        type=Path,
        metavar="FILE",
        help="the plugin's descriptor (JSON or YAML), for its errorHandling; needs --endpoint",
    )
    where.add_argument("--index", type=Path, metavar="FILE", help="a plugin index file (JSON list)")
    data = call.add_argument_group("the call")
    data.add_argument("--inputs", metavar="JSON", help="the inputs as a JSON object")
    data.add_argument(
        "-i", "--input", action="append", default=[], metavar="KEY=VALUE", help="one input"
    )
    data.add_argument("--properties", metavar="JSON", help="the properties as a JSON object")
    data.add_argument(
        "-p", "--property", action="append", default=[], metavar="KEY=VALUE", help="one property"
    )
    data.add_argument("--run-id", metavar="UUID", help="the run id (default: a new one)")
    data.add_argument("--traceparent", help="a W3C traceparent to continue (default: a new trace)")
    call.add_argument("-o", "--output", choices=("json", "yaml"), default="json")
    plugins._cluster_options(call)
    call.set_defaults(handler=run_call)


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def values(document: str | None, pairs: list[str], what: str) -> dict[str, Any]:
    """`--inputs JSON` merged with `-i KEY=VALUE` pairs (the pairs win)."""
    found: dict[str, Any] = {}
    if document:
        try:
            parsed = json.loads(document)
        except ValueError as error:
            raise UsageError(f"--{what} is not JSON: {error}") from error
        if not isinstance(parsed, dict):
            raise UsageError(f"--{what} must be a JSON object")
        found.update(parsed)
    for pair in pairs:
        key, equals, text = pair.partition("=")
        if not equals or not key:
            raise UsageError(f"{what}: expected KEY=VALUE, got {pair!r}")
        found[key] = _value(text)
    return found


def _target(args: argparse.Namespace) -> tuple[Client, PluginEntry]:
    if args.descriptor is not None or args.endpoint is not None:
        if args.index is not None:
            raise UsageError("--index names plugins by itself: no --endpoint or --descriptor")
        if args.endpoint is None:
            raise UsageError("--descriptor needs --endpoint: where the plugin's host listens")
        if args.descriptor is not None:
            index = PluginIndex.from_file(args.descriptor, args.endpoint)
        else:
            entry = PluginEntry.at(args.endpoint)
            index = PluginIndex([entry])
        return Client(index), index.entries[0]
    if args.plugin is None:
        raise UsageError("name the PLUGIN to call (or give --endpoint)")
    if args.index is not None:
        index = PluginIndex.from_file(args.index)
        return Client(index), index.find(args.plugin)
    from wayang_client import cluster  # noqa: PLC0415 - the Kubernetes client, only here

    default = cluster.connect(getattr(args, "kubeconfig", None), getattr(args, "context", None))
    index = cluster.index(getattr(args, "namespace", None) or default)
    return Client(index, transport=cluster.ServiceProxyTransport()), index.find(args.plugin)


def run_call(args: argparse.Namespace) -> int:
    try:
        inputs = values(args.inputs, args.input, "inputs")
        properties = values(args.properties, args.property, "properties")
        client, entry = _target(args)
        with client:
            result = client.call(
                entry,
                inputs,
                properties or None,
                run_id=args.run_id,
                traceparent=args.traceparent,
            )
    except UsageError as error:
        print(f"wayang call: error: {error}", file=sys.stderr)
        return USAGE
    except (DiscoveryError, ValueError) as error:
        print(f"wayang call: error: {error}", file=sys.stderr)
        return FAILED
    if result.error is None:
        sys.stdout.write(render.dump(result.output, args.output))
        return 0
    if not result.reached:
        tries = f" ({result.attempts} attempts)" if result.attempts > 1 else ""
        print(f"wayang call: error: {result.error.message}{tries}", file=sys.stderr)
        return FAILED
    payload = result.error.model_dump(mode="json", by_alias=True, exclude_none=True)
    sys.stdout.write(render.dump(payload, args.output))
    return FAILED

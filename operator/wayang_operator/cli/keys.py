"""`wayang keygen` and `wayang sign`: what a publisher's CI needs to sign plugin artifacts.

`keygen` writes a private key (mode 0600) and its public key, and prints the `trustedKeys` entry a
cluster admin adds to a PluginPolicy. `sign` sets `spec.signature` on every Plugin in the given
manifests, over the canonical payload the operator verifies (see core.signing), and prints the
signed manifests, or rewrites the files with `--in-place`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from ..api.descriptor import PluginDescriptor
from ..api.resources import KeyAlgorithm
from ..core import signing
from ..manifests.loader import Document
from ..manifests.sources import load_paths
from ..manifests.validate import Outcome, results_for


def register(commands: Any) -> None:
    keygen = commands.add_parser(
        "keygen",
        help="create a signing key pair for plugin artifacts",
        description="Write NAME.key (private, mode 0600) and NAME.pub, and print the PluginPolicy "
        "trustedKeys entry for the public key.",
    )
    keygen.add_argument("name", help="key name (also the file stem), e.g. release-2026")
    keygen.add_argument(
        "-a",
        "--algorithm",
        choices=[a.value for a in KeyAlgorithm],
        default=KeyAlgorithm.ED25519.value,
    )
    keygen.add_argument(
        "-d", "--directory", type=Path, default=Path(), help="where to write the files"
    )
    keygen.add_argument("--force", action="store_true", help="overwrite existing files")
    keygen.set_defaults(handler=run_keygen)

    sign = commands.add_parser(
        "sign",
        help="sign the Plugins in manifests",
        description="Set spec.signature on every Plugin in the manifests (files, folders or -).",
    )
    sign.add_argument("paths", nargs="+", metavar="PATH")
    sign.add_argument("-k", "--key", type=Path, required=True, help="private key file from keygen")
    sign.add_argument(
        "-n", "--name", help="key name written into the signature (default: file stem)"
    )
    sign.add_argument(
        "-i", "--in-place", action="store_true", help="rewrite the files (drops comments)"
    )
    sign.set_defaults(handler=run_sign)


def run_keygen(args: argparse.Namespace) -> int:
    private, public = args.directory / f"{args.name}.key", args.directory / f"{args.name}.pub"
    existing = [str(path) for path in (private, public) if path.exists()]
    if existing and not args.force:
        print(
            f"wayang keygen: {', '.join(existing)} exists; use --force to overwrite",
            file=sys.stderr,
        )
        return 1
    key = signing.generate(KeyAlgorithm(args.algorithm))
    args.directory.mkdir(parents=True, exist_ok=True)
    private.write_bytes(signing.private_pem(key))
    private.chmod(0o600)
    public.write_bytes(signing.public_pem(key))
    entry = {
        "name": args.name,
        "algorithm": args.algorithm,
        "publicKey": signing.public_pem(key).decode(),
    }
    print(f"# wrote {private} (keep it secret) and {public}", file=sys.stderr)
    print("# add to a PluginPolicy under spec.signing.trustedKeys:", file=sys.stderr)
    sys.stdout.write(yaml.safe_dump([entry], sort_keys=False))
    return 0


def run_sign(args: argparse.Namespace) -> int:
    try:
        key = signing.load_private(args.key.read_bytes())
    except (OSError, ValueError) as error:
        print(f"wayang sign: cannot use {args.key}: {error}", file=sys.stderr)
        return 1
    name = args.name or args.key.stem
    signed: dict[str, list[Any]] = {}
    failed = False
    for loaded in load_paths(args.paths):
        for result in results_for(loaded):
            if result.outcome is Outcome.INVALID:
                for problem in result.problems:
                    print(f"{result.source}: {problem.path}: {problem.message}", file=sys.stderr)
                failed = True
        if not isinstance(loaded, Document) or loaded.data is None:
            continue
        document = loaded.data
        if isinstance(document, dict) and document.get("kind") == "Plugin" and not failed:
            spec = PluginDescriptor.model_validate(document["spec"], by_alias=True, by_name=False)
            document["spec"]["signature"] = signing.sign(spec, key, name)
            print(f"signed {document['metadata']['name']} with {name!r}", file=sys.stderr)
        signed.setdefault(loaded.source, []).append(document)
    if failed:
        print("wayang sign: fix the invalid documents first; nothing was signed", file=sys.stderr)
        return 1
    for source, documents in signed.items():
        text = yaml.safe_dump_all(documents, sort_keys=False)
        if args.in_place and source != "<stdin>":
            Path(source).write_text(text)
        else:
            sys.stdout.write(text)
    return 0

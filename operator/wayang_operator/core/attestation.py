"""The operator's signature on the ScanReports it writes: a ScanReport it did not write is never
trusted and never scanned.

A ScanReport is the per-digest cache of a scan; the Scanned gate believes its status. Anyone who
may create or edit one (a tenant with write access to ScanReports, an admin, a sync tool) could
otherwise forge a clean report for a vulnerable digest, or point the scanner at a host of their
choosing. So the operator signs what it writes with its own Ed25519 key (the audit log's key,
kept in a Secret of its namespace): the spec when it requests a scan, the status when it records
one. A spec without a valid signature was not requested by the operator: it is replaced, not
scanned; a status without one is not read. The signed bytes are the namespace, the name and the
canonical JSON of the spec or the status (without its own signature), behind a domain prefix.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

SPEC_DOMAIN = b"wayang.io/scan-request/v1\n"
STATUS_DOMAIN = b"wayang.io/scan-report/v1\n"
FIELD = "attestation"
SPEC_FIELDS = ("artifact", "pluginId", "version", "pullSecret")
STATUS_FIELDS = (
    "report",
    "fixable",
    "truncated",
    "databaseUpdatedAt",
    "nextScanAt",
    "runs",
    "lastError",
)
"""What the scanner writes, all of it every time (absent = null), so what it signed is exactly
what it reads back."""


def _plain(value: Any) -> Any:
    """JSON as the API server returns it: an integral float comes back as an integer."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _payload(
    domain: bytes, namespace: str, name: str, document: Mapping[str, Any], fields: tuple[str, ...]
) -> bytes:
    body = {key: _plain(document[key]) for key in fields if document.get(key) is not None}
    text = json.dumps(
        {"namespace": namespace, "name": name, "document": body},
        sort_keys=True,
        separators=(",", ":"),
    )
    return domain + text.encode()


@dataclass(frozen=True)
class Attestor:
    key: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> Attestor:
        """A key of this process only (an operator without a persistent audit log): reports it
        wrote before a restart are scanned again."""
        return cls(Ed25519PrivateKey.generate())

    def _sign(self, data: bytes) -> str:
        return base64.b64encode(self.key.sign(data)).decode()

    def _verifies(self, data: bytes, signature: Any) -> bool:
        if not isinstance(signature, str):
            return False
        try:
            self.key.public_key().verify(base64.b64decode(signature, validate=True), data)
        except (InvalidSignature, binascii.Error, ValueError):
            return False
        return True

    def sign_spec(self, namespace: str, name: str, spec: Mapping[str, Any]) -> str:
        return self._sign(_payload(SPEC_DOMAIN, namespace, name, spec, SPEC_FIELDS))

    def sign_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> str:
        return self._sign(_payload(STATUS_DOMAIN, namespace, name, status, STATUS_FIELDS))

    def requested(self, namespace: str, name: str, spec: Mapping[str, Any]) -> bool:
        """The operator asked for this scan (its spec is signed by the operator)."""
        data = _payload(SPEC_DOMAIN, namespace, name, spec, SPEC_FIELDS)
        return self._verifies(data, spec.get(FIELD))

    def recorded(self, namespace: str, name: str, status: Mapping[str, Any]) -> bool:
        """The operator wrote this status (a scan result or failure), word for word."""
        data = _payload(STATUS_DOMAIN, namespace, name, status, STATUS_FIELDS)
        return self._verifies(data, status.get(FIELD))

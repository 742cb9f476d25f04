"""A self-signed serving certificate for the admission webhooks.

The certificate is its own CA (so it can be the webhook configuration's caBundle), valid for the
host name or IP the API server uses to reach the operator. A single process keeps one on disk;
replicas installed by the chart share one through a Secret (`shared_certificate`). Clusters with
cert-manager mount a certificate into the same folder instead, and this leaves it alone.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ..kube import KubeApi

VALIDITY = datetime.timedelta(days=365)


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def self_signed(hosts: Sequence[str]) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM): its own CA, valid for every host name or IP in `hosts`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _write(folder: Path, cert_pem: bytes, key_pem: bytes) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    key_path.write_bytes(key_pem)
    key_path.chmod(0o600)
    cert_path.write_bytes(cert_pem)
    return cert_path, key_path


def ensure_certificate(folder: Path, host: str) -> tuple[Path, Path]:
    """(cert.pem, key.pem) in `folder`, created when missing (one process, its own certificate)."""
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    return _write(folder, *self_signed([host]))


def service_hosts(host: str) -> list[str]:
    """The names a Service's certificate must carry: `svc.ns.svc` is what the API server dials,
    the `.cluster.local` form is what other clients in the cluster may use."""
    return [host, f"{host}.cluster.local"] if host.endswith(".svc") else [host]


async def shared_certificate(
    api: KubeApi, namespace: str, secret: str, host: str, folder: Path
) -> tuple[Path, Path]:
    """The serving certificate every replica uses, from a Secret the first replica creates.

    Replicas race to create it; the API server keeps one (create is atomic, the loser reads the
    winner's), so all replicas present the same certificate and the caBundle fits them all. The
    Secret is the operator's, not the chart's: a chart-generated one would change on every
    `helm template`, which Argo CD shows as drift. To rotate, delete it and restart the pods.
    """
    data = await api.secret_data(namespace, secret)
    if data is None:
        cert_pem, key_pem = self_signed(service_hosts(host))
        await api.create_secret(namespace, secret, {"tls.crt": cert_pem, "tls.key": key_pem})
        data = await api.secret_data(namespace, secret)
    if data is None or "tls.crt" not in data or "tls.key" not in data:
        raise RuntimeError(f"Secret {namespace}/{secret} has no tls.crt and tls.key")
    return _write(folder, data["tls.crt"], data["tls.key"])

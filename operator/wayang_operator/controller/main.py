"""`wayang-operator`: the operator process (kopf), configured from OperatorSettings.

Importing the handler modules registers them with kopf; the startup hook turns the settings into
kopf's own (webhook server, managed webhook configuration), and the metrics endpoint is a
plain Prometheus HTTP server beside kopf's liveness endpoint.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
from prometheus_client import start_http_server

from ..kube import load_configuration
from ..settings import OperatorSettings
from . import admission, auditing, handlers, namespaces, scanning, workloads  # noqa: F401
from .certs import ensure_certificate
from .runtime import RUNTIME
from .webhook_server import WebhookServer


@kopf.on.startup()
def configure(*, settings: kopf.OperatorSettings, **_: Any) -> None:
    ours = RUNTIME.settings
    cert, key = ensure_certificate(ours.webhook_cert_dir, ours.webhook_host)
    settings.admission.server = WebhookServer(
        addr=ours.webhook_listen,
        port=ours.webhook_port,
        host=ours.webhook_host,
        certfile=cert,
        pkeyfile=key,
        cafile=cert,
    )
    settings.admission.managed = ours.webhook_configuration
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300


def main() -> None:
    settings = OperatorSettings()
    RUNTIME.settings = settings
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if settings.watch_namespaces:
        namespaces.register()
    if settings.workloads:
        workloads.register()
    load_configuration()
    start_http_server(settings.metrics_port)
    kopf.run(
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        standalone=True,  # no kopf peering: replicas elect a leader over a Lease (leadership.py)
        liveness_endpoint=f"http://0.0.0.0:{settings.liveness_port}/healthz",
    )

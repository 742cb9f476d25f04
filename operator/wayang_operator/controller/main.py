"""`wayang-operator`: the operator process (kopf), configured from OperatorSettings.

Importing the handler modules registers them with kopf; the startup hook turns the settings into
kopf's own (webhook server, managed webhook configuration), and the metrics endpoint is a
plain Prometheus HTTP server beside kopf's liveness endpoint.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import kopf
from prometheus_client import start_http_server

from .. import __version__, tracing
from ..kube import load_configuration
from ..settings import OperatorSettings
from . import admission, auditing, handlers, logs, namespaces, scanning, workloads  # noqa: F401
from .certs import ensure_certificate, shared_certificate
from .runtime import RUNTIME
from .webhook_server import WebhookServer

logger = logging.getLogger("wayang.startup")


@kopf.on.startup()
async def configure(*, settings: kopf.OperatorSettings, **_: Any) -> None:
    ours = RUNTIME.settings
    if ours.webhook_cert_secret:
        cert, key = await shared_certificate(
            RUNTIME.api,
            ours.audit_namespace,
            ours.webhook_cert_secret,
            ours.webhook_host,
            ours.webhook_cert_dir,
        )
    else:
        cert, key = ensure_certificate(ours.webhook_cert_dir, ours.webhook_host)
    if ours.webhook_ca_configuration:
        # before the webhooks are served, so the API server trusts the first request it sends
        found = await RUNTIME.api.set_webhook_ca(ours.webhook_ca_configuration, cert.read_bytes())
        if not found:
            logger.warning("no webhook configuration %s to fill in", ours.webhook_ca_configuration)
    settings.admission.server = WebhookServer(
        addr=ours.webhook_listen,
        port=ours.webhook_port,
        host=ours.webhook_host,
        certfile=cert,
        pkeyfile=key,
        cafile=cert,
    )
    settings.admission.managed = ours.webhook_configuration or None
    RUNTIME.identity = await RUNTIME.api.whoami()
    logger.info("the API server knows this operator as %s", RUNTIME.identity)
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300


@kopf.on.cleanup()
async def flush_traces(**_: Any) -> None:
    """The spans still in the batch leave before the process does."""
    if RUNTIME.tracing is not None:
        RUNTIME.tracing.shutdown()


def main(argv: Sequence[str] | None = None) -> None:
    """Settings come from WAYANG_* variables (a pod's env); the command line only answers --help
    and --version, so `wayang-operator --help` in an image does not start an operator."""
    parser = argparse.ArgumentParser(
        prog="wayang-operator",
        description="The Wayang plugin operator. Configured by WAYANG_* environment variables "
        "(the README's settings; the Helm chart sets them).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.parse_args(argv)
    settings = OperatorSettings()
    RUNTIME.settings = settings
    logs.configure(settings.log_format, settings.log_level)
    try:
        RUNTIME.tracing = tracing.configure(os.environ)
    except tracing.TracingError as error:
        sys.exit(f"wayang-operator: {error}")
    RUNTIME.tracer = tracing.tracer_of(RUNTIME.tracing)
    if RUNTIME.tracing is not None:
        logger.info("tracing: spans of every reconcile go to the OTEL_* exporter")
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

"""One trace from the engine SDK through the runtime host into the plugin, on the real node.

The operator is configured as a platform team would (WAYANG_PLUGIN_OTLP_ENDPOINT and
WAYANG_PLUGIN_OTLP_TO): it renders OTEL_EXPORTER_OTLP_ENDPOINT into every plugin pod and lets the
pod's NetworkPolicy reach the collector, and nothing else. The collector is an OTLP/HTTP receiver
in this process on the pod bridge's gateway (tests/otlp.py decodes what the host's OpenTelemetry
exporter sends). The SDK runs here, found the plugin in the plugin index, with an in-memory
exporter for its own span. The plugin is untrusted: under gVisor, with no egress but to the
collector.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest
from tests.otlp import ReceivedSpan, Receiver, in_memory_spans

from e2e import flow
from e2e.conftest import Kube
from e2e.flow import approval, phase_becomes, running_tenant_of
from e2e.localcluster import node as localnode
from e2e.operator_process import WORKLOADS, Operator
from e2e.operator_process import running as running_operators
from e2e.runtimeimages import sample_images
from wayang_client import Client, PluginIndex

GATEWAY = "10.88.0.1"
"""The host on the node's pod bridge."""
READY_TIMEOUT = 180
CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
"""The traceparent of the engine's own run, which the SDK's span continues."""


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver("0.0.0.0") as receiving:
        yield receiving


@pytest.fixture(scope="module")
def operator(
    kube: Kube, node: localnode.Node, receiver: Receiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    running = Operator(
        kube,
        tmp_path_factory.mktemp("operator"),
        env={
            **WORKLOADS,
            "WAYANG_PLUGIN_OTLP_ENDPOINT": receiver.url(GATEWAY),
            "WAYANG_PLUGIN_OTLP_TO": json.dumps([{"cidr": f"{GATEWAY}/32"}]),
        },
    )
    with running_operators(kube, running):
        yield running


@pytest.fixture(scope="module")
def images(
    node: localnode.Node, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, localnode.ImportedImage]:
    return sample_images(node, tmp_path_factory.mktemp("images"))


@pytest.fixture
def tenant(kube: Kube, namespace: str, operator: Operator) -> Iterator[str]:
    with running_tenant_of(kube, namespace) as name:
        yield name


@pytest.fixture(scope="module")
def sdk_spans() -> Any:
    return in_memory_spans()


def test_one_trace_spans_the_sdk_the_host_and_the_plugin(
    kube: Kube,
    tenant: str,
    images: dict[str, localnode.ImportedImage],
    receiver: Receiver,
    sdk_spans: Any,
) -> None:
    image = images["introspect"]
    document = flow.sample_plugin(
        "introspect",
        "introspect",
        image.repository,
        image.digest,
        resourceProfile={"cpu": "200m", "memory": "192Mi", "timeout": 10000},
    )
    kube.apply(document, user="publisher-1", namespace=tenant)
    phase_becomes(kube, tenant, "introspect", "AwaitingApproval")
    assert approval(kube, tenant, "introspect", "approver-1").returncode == 0
    status = phase_becomes(kube, tenant, "introspect", "Ready", timeout=READY_TIMEOUT)
    assert status["workload"]["runtimeClass"] == "gvisor"
    deployment = kube.get("deployment", "wayang-introspect", tenant)
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": receiver.url(GATEWAY)} in container[
        "env"
    ]
    index = kube.get("configmap", "wayang-plugin-index", tenant)["data"]
    entry = PluginIndex.from_config_map(index, tenant).find("introspect")
    service = kube.get("service", "wayang-introspect", tenant)["spec"]
    # the index names the Service by its cluster DNS name, which this host cannot resolve
    entry = dataclasses.replace(
        entry, endpoint=f"http://{service['clusterIP']}:{service['ports'][0]['port']}"
    )
    flow.execute(kube, tenant, "introspect", {}, patience=60)  # until kube-proxy routes it
    sdk_spans.clear()
    with Client([entry]) as client:
        result = client.call("introspect", {}, traceparent=CALLER)
    assert result.ok, result
    [sdk_span] = sdk_spans.get_finished_spans()
    sdk = sdk_span.get_span_context()
    trace_id = f"{sdk.trace_id:032x}"
    assert trace_id == CALLER.split("-")[1], "the SDK continues the engine's trace"

    def host_spans(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
        return [s for s in spans if s.trace_id == trace_id and s.kind in ("SERVER", "INTERNAL")]

    received = host_spans(receiver.wait(lambda spans: len(host_spans(spans)) >= 2, timeout=60))
    [server] = [s for s in received if s.kind == "SERVER" and s.attributes.get("wayang.port")]
    [inner] = [s for s in received if s.kind == "INTERNAL" and s.parent_span_id == server.span_id]
    assert server.parent_span_id == f"{sdk.span_id:016x}", "host span under the SDK's"
    assert server.service == "io.wayang.samples/introspect"
    assert server.attributes["wayang.run_id"] == result.run_id
    assert result.output["traceparent"] == f"00-{trace_id}-{inner.span_id}-01", (
        "the plugin, in its gVisor sandbox, got the context of its own span"
    )

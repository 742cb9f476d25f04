"""Discovery: the plugin index as the operator writes it, and files without a cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.test_runtime_host import sample
from wayang_client import DiscoveryError, PluginEntry, PluginIndex
from wayang_client.discovery import INDEX_KEY, INDEX_NAME
from wayang_operator.api.descriptor import PluginDescriptor
from wayang_operator.core import workload
from wayang_operator.core.workload import Active, plugin_index


def spec(name: str, **changes: Any) -> PluginDescriptor:
    return PluginDescriptor.model_validate(sample(name, **changes), by_alias=True)


def published(namespace: str = "team-a") -> dict[str, Any]:
    echo = spec("echo")
    failing = spec("failing", errorHandling={"fallbackNodeId": "echo"})
    return plugin_index(namespace, [Active("echo", echo), Active("failing", failing)])


def test_the_index_the_operator_writes_is_what_the_sdk_reads() -> None:
    config_map = published()
    assert (config_map["metadata"]["name"], INDEX_NAME) == (workload.INDEX_NAME, INDEX_NAME)
    index = PluginIndex.from_config_map(config_map["data"], "team-a")
    echo = index.find("echo")
    assert echo.endpoint == "http://wayang-echo.team-a.svc:80"
    assert echo.service == ("wayang-echo", 80)
    assert (echo.success_port, echo.error_port, echo.timeout_ms) == ("echoed", "error", 5000)
    assert echo.retry_policy.max_attempts == 3
    assert echo.circuit_breaker.failure_threshold == 5, "defaults applied by the operator"
    assert index.find("io.wayang.samples/failing").error_handling.fallback_node_id == "echo"
    written = json.loads(config_map["data"][INDEX_KEY])
    assert [entry.to_index() for entry in index] == written, "the same shape both ways"


def test_an_entry_made_from_a_descriptor_is_the_operators_entry() -> None:
    echo = spec("echo")
    [written] = json.loads(plugin_index("team-a", [Active("echo", echo)])["data"][INDEX_KEY])
    made = PluginEntry.from_descriptor(
        echo, "http://wayang-echo.team-a.svc:80", name="echo", namespace="team-a"
    )
    assert made.to_index() == written


def test_an_index_from_before_the_sdk_fields_gets_the_defaults() -> None:
    old = [{"plugin": "echo", "id": "acme/echo", "version": "1.0.0", "endpoint": "http://e:80"}]
    [entry] = PluginIndex.from_entries(old, "team-a")
    assert entry.retry_policy.max_attempts == 3
    assert entry.circuit_breaker.enabled
    assert (entry.error_port, entry.timeout_ms, entry.success_port) == ("error", 30000, None)


def test_found_by_name_then_by_id_and_a_missing_plugin_names_what_serves() -> None:
    index = PluginIndex.from_config_map(published()["data"], "team-a")
    assert index.find("failing").name == "failing"
    assert index.find("io.wayang.samples/echo").name == "echo"
    with pytest.raises(DiscoveryError, match=r'no plugin "nope".*team-a.*serving: echo, failing'):
        index.find("nope")


def test_an_index_file_without_a_cluster(tmp_path: Path) -> None:
    path = tmp_path / "plugins.json"
    path.write_text(published()["data"][INDEX_KEY])
    index = PluginIndex.from_file(path)
    assert [entry.name for entry in index] == ["echo", "failing"]


@pytest.mark.parametrize("form", ["json", "yaml", "resource"])
def test_one_descriptor_and_its_endpoint(tmp_path: Path, form: str) -> None:
    descriptor = sample("flaky")
    path = tmp_path / f"flaky.{form}"
    if form == "json":
        path.write_text(json.dumps(descriptor))
    elif form == "yaml":
        path.write_text(yaml.safe_dump(descriptor | {"createdAt": "2026-01-31T12:00:00Z"}))
    else:
        resource = {
            "apiVersion": "wayang.io/v1alpha1",
            "kind": "Plugin",
            "metadata": {"name": "flaky-one", "namespace": "team-b"},
            "spec": descriptor,
        }
        path.write_text(yaml.safe_dump(resource))
    [entry] = PluginIndex.from_file(path, "http://127.0.0.1:9/")
    assert entry.endpoint == "http://127.0.0.1:9"
    assert entry.id == "io.wayang.samples/flaky"
    assert entry.retry_policy.max_attempts == 4
    assert entry.circuit_breaker.failure_threshold == 3
    assert entry.name == ("flaky-one" if form == "resource" else "flaky")
    assert entry.namespace == ("team-b" if form == "resource" else "")


@pytest.mark.parametrize(
    ("content", "endpoint", "message"),
    [
        (None, "http://x", "cannot read"),
        ("{not json: [", "http://x", "neither JSON nor YAML"),
        ('"a string"', "http://x", "expected a plugin index"),
        (json.dumps(sample("echo")), None, "give its endpoint"),
        (json.dumps({"id": "acme/x"}), "http://x", "not a valid PluginDescriptor"),
        (json.dumps([{"id": "acme/x"}]), None, "index entry 'acme/x' is not usable"),
    ],
)
def test_unusable_files_are_one_clear_error(
    tmp_path: Path, content: str | None, endpoint: str | None, message: str
) -> None:
    path = tmp_path / "index.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DiscoveryError, match=message):
        PluginIndex.from_file(path, endpoint)

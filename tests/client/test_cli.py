"""`wayang call` and `kubectl wayang call` as a person runs them (a subprocess, so a traceback
could not hide): against a real runtime host, an index file, and a stand-in API server that
serves the plugin index ConfigMap and forwards its service proxy to the real host."""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.test_runtime_host import ROOT, Host, sample
from wayang_operator.api.descriptor import PluginDescriptor
from wayang_operator.core.workload import Active, plugin_index

TOKEN = "sdk-test-token"


def wayang(*args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), str(ROOT)]),
        "KUBECONFIG": str(kubeconfig or "/nonexistent/kubeconfig"),
    }
    command = [
        sys.executable,
        "-c",
        "import sys; from wayang_operator.cli import main; sys.exit(main())",
    ]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) <= 1, done.stderr


def url(host: Host) -> str:
    return f"http://127.0.0.1:{host.port}"


def test_call_an_endpoint_with_inputs_as_pairs(hosts: dict[str, Host]) -> None:
    done = wayang("call", "--endpoint", url(hosts["echo"]), "-i", "text=hello")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["text"] == "HELLO!"


def test_call_with_a_descriptor_prints_the_error_payload_and_exits_1(
    hosts: dict[str, Host], tmp_path: Path
) -> None:
    descriptor = tmp_path / "failing.yaml"
    descriptor.write_text(yaml.safe_dump(sample("failing")))
    done = wayang(
        "call",
        "--descriptor", str(descriptor),
        "--endpoint", url(hosts["failing"]),
        "--inputs", '{"reason": "on purpose"}',
        "-o", "yaml",
    )  # fmt: skip
    assert done.returncode == 1
    payload = yaml.safe_load(done.stdout)
    assert payload["type"] == "ToolError"
    assert payload["originNode"] == "io.wayang.samples/failing"
    assert (payload["attempt"], payload["maxAttempts"]) == (0, 1)
    no_traceback(done)


def test_an_index_file_with_a_fallback(hosts: dict[str, Host], tmp_path: Path) -> None:
    failing = sample("failing", errorHandling={"fallbackNodeId": "flaky"})
    index = [
        {**entry, "endpoint": url(hosts[entry["plugin"]])}
        for entry in json.loads(
            plugin_index(
                "",
                [
                    Active("failing", PluginDescriptor.model_validate(failing)),
                    Active("flaky", PluginDescriptor.model_validate(sample("flaky"))),
                ],
            )["data"]["plugins.json"]
        )
    ]
    path = tmp_path / "plugins.json"
    path.write_text(json.dumps(index))
    done = wayang("call", "failing", "--index", str(path), "-i", "reason=x")
    assert done.returncode == 1, "flaky has no input `reason`: its ValidationError is final"
    assert json.loads(done.stdout)["originNode"] == "io.wayang.samples/flaky"
    done = wayang("call", "failing", "--index", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    output = json.loads(done.stdout)
    assert output["text"] == ""
    assert output["call"] >= 1, "flaky counts per worker without a counter file"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--endpoint", "http://127.0.0.1:9"], 1, r"connection refused \(3 attempts\)"),
        (["--descriptor", "x.json"], 2, "--descriptor needs --endpoint"),
        ([], 2, "name the PLUGIN"),
        (["p", "--index", "/nonexistent.json"], 1, "cannot read /nonexistent.json"),
        (["--endpoint", "http://x", "--inputs", "[1]"], 2, "must be a JSON object"),
        (["--endpoint", "http://x", "-i", "novalue"], 2, "expected KEY=VALUE"),
        (["--endpoint", "http://x", "--run-id", "r1"], 1, "badly formed hexadecimal UUID"),
        (["p"], 1, "no usable kubeconfig"),
    ],
)
def test_errors_reaching_no_plugin_are_one_line(args: list[str], code: int, message: str) -> None:
    done = wayang("call", *args)
    assert done.returncode == code
    assert done.stdout == ""
    assert re.search(message, done.stderr), done.stderr
    no_traceback(done)


# ------------------------------------------------------------------------------------------------
# kubectl wayang call, through a stand-in API server


@dataclass
class ApiServer:
    port: int
    index: dict[str, Any]
    backends: dict[str, int]
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)


@contextlib.contextmanager
def api_server(index: dict[str, Any], backends: dict[str, int]) -> Iterator[ApiServer]:
    state = ApiServer(0, index, backends)
    proxy = re.compile(r"^/api/v1/namespaces/([^/]+)/services/([^/:]+):80/proxy/execute$")

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def status(self, code: int, message: str) -> None:
            document = {"kind": "Status", "status": "Failure", "message": message, "code": code}
            self.answer(code, json.dumps(document).encode())

        def authorized(self) -> bool:
            state.requests.append((self.command, self.path, dict(self.headers)))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self.status(401, "Unauthorized")
                return False
            return True

        def do_GET(self) -> None:
            if not self.authorized():
                return
            namespace = state.index["metadata"]["namespace"]
            if self.path.split("?")[0] == (
                f"/api/v1/namespaces/{namespace}/configmaps/wayang-plugin-index"
            ):
                self.answer(200, json.dumps(state.index).encode())
            else:
                self.status(404, 'configmaps "wayang-plugin-index" not found')

        def do_POST(self) -> None:
            if not self.authorized():
                return
            body = self.rfile.read(int(self.headers["Content-Length"]))
            found = proxy.match(self.path)
            if found is None or found.group(2) not in state.backends:
                self.status(503, f'no endpoints available for service "{self.path}"')
                return
            connection = http.client.HTTPConnection("127.0.0.1", state.backends[found.group(2)])
            connection.request("POST", "/execute", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            self.answer(response.status, response.read())
            connection.close()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def kubeconfig(path: Path, port: int, namespace: str = "team-a") -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "me", "user": {"token": TOKEN}}],
                "contexts": [
                    {
                        "name": "fake",
                        "context": {"cluster": "fake", "user": "me", "namespace": namespace},
                    }
                ],
                "current-context": "fake",
            }
        )
    )
    return path


@pytest.fixture
def cluster(hosts: dict[str, Host], tmp_path: Path) -> Iterator[tuple[ApiServer, Path]]:
    failing = sample(
        "failing",
        errorHandling={
            "fallbackNodeId": "echo",
            "retryPolicy": {"maxAttempts": 2, "initialDelayMs": 100},
        },
    )
    index = plugin_index(
        "team-a",
        [
            Active("echo", PluginDescriptor.model_validate(sample("echo"))),
            Active("failing", PluginDescriptor.model_validate(failing)),
            Active("gone", PluginDescriptor.model_validate(sample("flaky"))),
        ],
    )
    backends = {"wayang-echo": hosts["echo"].port, "wayang-failing": hosts["failing"].port}
    with api_server(index, backends) as server:
        yield server, kubeconfig(tmp_path / "kubeconfig", server.port)


def test_kubectl_wayang_call_goes_through_the_service_proxy(
    cluster: tuple[ApiServer, Path],
) -> None:
    server, config = cluster
    given = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    done = wayang("call", "echo", "-i", "text=hi", "--traceparent", given, kubeconfig=config)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["text"] == "HI!"
    paths = [(method, path) for method, path, _ in server.requests]
    assert ("GET", "/api/v1/namespaces/team-a/configmaps/wayang-plugin-index") in paths
    assert ("POST", "/api/v1/namespaces/team-a/services/wayang-echo:80/proxy/execute") in paths
    posted = [headers for method, _, headers in server.requests if method == "POST"]
    assert all(h["traceparent"].startswith("00-0af7651916cd43dd") for h in posted)


def test_kubectl_wayang_call_applies_the_indexed_error_handling(
    cluster: tuple[ApiServer, Path],
) -> None:
    """failing's index entry routes to echo after 2 attempts; echo needs `text`, which the
    fallback gets too, so the call ends on echo's success port."""
    server, config = cluster
    done = wayang("call", "failing", "-n", "team-a", "-i", "reason=x", kubeconfig=config)
    assert done.returncode == 1, "echo refuses the input `reason`: its error is the answer"
    assert json.loads(done.stdout)["originNode"] == "io.wayang.samples/echo"
    posts = [path for method, path, _ in server.requests if method == "POST"]
    services = [p.split("/")[6] for p in posts]
    assert list(dict.fromkeys(services)) == ["wayang-failing:80", "wayang-echo:80"], (
        "failing's ToolError is not retryable: straight to the fallback"
    )
    assert len(services) in (2, 4), "one call each (plus one without `attempt` for an old host)"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], r'no plugin "nope" .* in namespace team-a; serving: echo, failing, gone'),
        (["echo", "-n", "team-b"], "no plugin index in namespace team-b"),
        (["gone", "-i", "text=x"], r"no endpoints available .*\(4 attempts\)"),
    ],
)
def test_kubectl_wayang_call_says_in_one_line_what_it_could_not_reach(
    cluster: tuple[ApiServer, Path], args: list[str], message: str
) -> None:
    _, config = cluster
    done = wayang("call", *args, kubeconfig=config)
    assert done.returncode == 1
    assert re.search(message, done.stderr), done.stderr
    no_traceback(done)

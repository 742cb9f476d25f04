"""One strategy per implementation type: what the scan gate, the runnable check and the
renderer read, so a python plugin runs on the runtime host with its wheel fetched into the pod,
and a jar on the JVM host with its heap bounded by the plugin's memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import wasmtime
from tests import documents as d

from wayang_operator.api.descriptor import (
    Capability,
    ImplementationType,
    PluginDescriptor,
    SandboxLevel,
)
from wayang_operator.api.resources import Peer, PluginPolicySpec
from wayang_operator.core.artifacts import (
    STRATEGIES,
    Runtimes,
    ScanInput,
    artifact_port,
    location_problem,
    repository_of,
)
from wayang_operator.core.availability import PodRecord
from wayang_operator.core.breaker import Severity
from wayang_operator.core.contract import admission_problems
from wayang_operator.core.policy import NamedPolicy
from wayang_operator.core.workload import NotRunnable, Owner, render, runnable
from wayang_operator.scanning import wasmstrings

OWNER = Owner(name="echo", namespace="team-a", uid="u-1")
WHEEL = "https://files.example.com/wheels/echo-1.0.0-py3-none-any.whl"
HOST = "localhost/wayang/runtime-python@sha256:" + "cd" * 32
RUNTIMES = Runtimes(
    images={"python": HOST}, artifacts_to=(Peer.model_validate({"cidr": "10.0.0.7/32"}),)
)


def python(**implementation: Any) -> PluginDescriptor:
    document = {
        **d.descriptor(),
        "implementation": {
            "type": "python",
            "coordinate": "echo",
            "repository": WHEEL,
            "digest": "sha256:" + "ab" * 32,
            "entrypoint": "echo_plugin:execute",
            **implementation,
        },
        "sandboxLevel": "untrusted",
    }
    return PluginDescriptor.model_validate(document, by_alias=True, by_name=False)


def policy() -> NamedPolicy:
    return NamedPolicy("p", PluginPolicySpec())


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in objects}


def test_every_type_has_a_strategy() -> None:
    assert set(STRATEGIES) == set(ImplementationType)
    hosted = {kind for kind, how in STRATEGIES.items() if how.hosted}
    assert hosted == set(ImplementationType) - {ImplementationType.CONTAINER}
    assert all(STRATEGIES[kind].load_path for kind in hosted)


def test_a_python_plugin_runs_on_the_host_with_its_wheel_fetched_read_only() -> None:
    objects = by_kind(render(OWNER, python(), [policy()], runtimes=RUNTIMES))
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    (host,) = pod["containers"]
    (fetch,) = pod["initContainers"]
    assert host["image"] == fetch["image"] == HOST
    assert fetch["command"] == ["python3", "/opt/wayang/fetch.py"]
    env = {e["name"]: e["value"] for e in fetch["env"]}
    assert env["WAYANG_ARTIFACT_REPOSITORY"] == WHEEL
    assert env["WAYANG_ARTIFACT_DIGEST"] == "sha256:" + "ab" * 32
    assert {"name": "artifact", "mountPath": "/opt/wayang/plugin", "readOnly": True} in host[
        "volumeMounts"
    ]
    assert fetch["volumeMounts"] == [{"name": "artifact", "mountPath": "/opt/wayang/plugin"}]
    assert fetch["securityContext"] == host["securityContext"]
    assert {"name": "artifact", "emptyDir": {}} in pod["volumes"]
    egress = objects["NetworkPolicy"]["spec"]["egress"]
    assert {
        "to": [{"ipBlock": {"cidr": "10.0.0.7/32"}}],
        "ports": [{"protocol": "TCP", "port": 443}],
    } in egress


def test_a_container_plugin_has_no_fetcher_and_no_artifact_egress() -> None:
    document = {**d.descriptor(), "sandboxLevel": "untrusted"}
    document["implementation"] = {
        "type": "container",
        "coordinate": "registry.example.com/team/echo",
        "digest": "sha256:" + "ab" * 32,
    }
    spec = PluginDescriptor.model_validate(document, by_alias=True, by_name=False)
    objects = by_kind(render(OWNER, spec, [policy()], runtimes=RUNTIMES))
    assert "initContainers" not in objects["Deployment"]["spec"]["template"]["spec"]
    assert not any(
        rule.get("to") == [{"ipBlock": {"cidr": "10.0.0.7/32"}}]
        for rule in objects["NetworkPolicy"]["spec"]["egress"]
    )


def test_without_a_host_image_a_python_plugin_is_not_runnable_and_says_what_to_set() -> None:
    with pytest.raises(NotRunnable, match="no runtime host image for python plugins"):
        runnable(python(), [policy()])
    assert runnable(python(), [policy()], RUNTIMES).runtime_class == "gvisor"


@pytest.mark.parametrize("kind", ["jar", "maven"])
def test_a_jvm_plugin_runs_on_the_jvm_host_with_its_heap_bounded_by_its_memory(kind: str) -> None:
    jvm = "localhost/wayang/runtime-jvm@sha256:" + "ef" * 32
    spec = python(type=kind, coordinate="io.wayang.samples:echo:1.0.0", entrypoint="a.Echo")
    if kind == "maven":
        spec = python(type=kind, coordinate="io.wayang.samples:echo:1.0.0", entrypoint="a.Echo",
                      repository=None)  # fmt: skip
    with pytest.raises(NotRunnable, match=f"no runtime host image for {kind} plugins"):
        runnable(spec, [policy()], RUNTIMES)
    runtimes = Runtimes(images={kind: jvm})
    pod = by_kind(render(OWNER, spec, [policy()], runtimes=runtimes))["Deployment"]
    template = pod["spec"]["template"]["spec"]
    (host,), (fetch,) = template["containers"], template["initContainers"]
    assert host["image"] == fetch["image"] == jvm
    env = {e["name"]: e["value"] for e in host["env"]}
    assert env["WAYANG_JVM_MEMORY"] == host["resources"]["limits"]["memory"]
    assert "WAYANG_WASM_PREOPEN" not in env
    fetched = {e["name"]: e["value"] for e in fetch["env"]}
    assert fetched["WAYANG_ARTIFACT_TYPE"] == kind
    if kind == "maven":
        assert fetched["WAYANG_ARTIFACT_REPOSITORY"] == "https://repo.maven.apache.org/maven2/"


def test_a_fetched_type_needs_an_oci_or_http_repository_at_admission() -> None:
    assert STRATEGIES[ImplementationType.PYTHON].scan is ScanInput.FILES
    assert location_problem({"type": "container", "coordinate": "r/x"}) is None
    pypi = {"type": "python", "coordinate": "echo", "digest": "sha256:" + "ab" * 32}
    assert location_problem(pypi) is None
    assert repository_of(python(repository=None).implementation) == "https://pypi.org/simple/"
    assert location_problem({**pypi, "repository": "oci://registry:5000/team/echo:1.0"}) is None
    problems = admission_problems({"implementation": {**pypi, "repository": "ftp://r/x.whl"}})
    assert problems == [
        (
            "spec.implementation.repository",
            "implementation.repository 'ftp://r/x.whl' is neither an oci:// artifact reference "
            "nor an http(s) URL",
        )
    ]
    problems = admission_problems({"implementation": {**pypi, "repository": "oci://r/Team"}})
    assert problems == [
        (
            "spec.implementation.repository",
            "implementation.repository 'oci://r/Team' has no valid repository name ('Team': "
            "lowercase, digits, . _ - and /); the form is oci://<registry host[:port]>/<name>"
            "[:<tag>]",
        )
    ]


def test_a_pod_reaches_an_oci_registry_on_its_port_or_https() -> None:
    assert artifact_port("oci://registry.example.com:5000/team/echo:1.0") == 5000
    assert artifact_port("oci://registry.example.com/team/echo") == 443
    assert artifact_port("http://files.example.com/echo.wasm") == 80


def allowing(*patterns: str) -> NamedPolicy:
    return NamedPolicy(
        "p", PluginPolicySpec.model_validate({"secrets": {"allowed": list(patterns)}})
    )


def test_the_pull_secret_goes_to_the_kubelet_for_images_and_only_to_the_fetcher_for_wheels() -> (
    None
):
    owner = Owner("echo", "team-a", "u-1", pull_secret="registry-pull")
    document = {**d.descriptor(), "sandboxLevel": "untrusted"}
    document["implementation"] = {
        "type": "container",
        "coordinate": "registry.example.com/team/echo",
        "digest": "sha256:" + "ab" * 32,
    }
    image = PluginDescriptor.model_validate(document, by_alias=True, by_name=False)
    pod = by_kind(render(owner, image, [allowing("registry-*")]))["Deployment"]["spec"]["template"][
        "spec"
    ]
    assert pod["imagePullSecrets"] == [{"name": "registry-pull"}]

    hosted = by_kind(render(owner, python(), [allowing("registry-*")], runtimes=RUNTIMES))
    pod = hosted["Deployment"]["spec"]["template"]["spec"]
    assert "imagePullSecrets" not in pod  # the host image is the platform's, not the tenant's
    (fetch,) = pod["initContainers"]
    (host,) = pod["containers"]
    assert {"name": "pull-secret", "mountPath": "/var/run/wayang/pull", "readOnly": True} in fetch[
        "volumeMounts"
    ]
    assert not any(m["name"] == "pull-secret" for m in host["volumeMounts"])
    assert {"name": "WAYANG_PULL_CONFIG", "value": "/var/run/wayang/pull/config.json"} in fetch[
        "env"
    ]
    assert {
        "name": "pull-secret",
        "secret": {
            "secretName": "registry-pull",
            "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
        },
    } in pod["volumes"]


def test_a_pull_secret_the_policy_does_not_allow_makes_the_plugin_not_runnable() -> None:
    with pytest.raises(NotRunnable, match="Secret 'registry-pull' \\(the pull Secret"):
        runnable(python(), [allowing("db-*")], RUNTIMES, "registry-pull")
    with pytest.raises(NotRunnable, match=r"secrets\.allowed: none"):
        runnable(python(), [policy()], RUNTIMES, "registry-pull")


def test_a_fetcher_that_refuses_the_artifact_is_a_critical_failure_of_the_pod() -> None:
    refused = "SecurityError: http://files/echo.whl is sha256:11, not the pinned sha256:22"
    pod = PodRecord.of(
        {
            "metadata": {"name": "wayang-echo-1", "labels": {"wayang.io/plugin": "echo"}},
            "status": {
                "initContainerStatuses": [
                    {
                        "name": "fetch",
                        "restartCount": 2,
                        "ready": False,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {
                            "terminated": {"exitCode": 1, "reason": "Error", "message": refused}
                        },
                    }
                ],
                "containerStatuses": [
                    {
                        "name": "plugin",
                        "restartCount": 0,
                        "ready": False,
                        "state": {"waiting": {"reason": "PodInitializing"}},
                    }
                ],
            },
        }
    )
    assert pod is not None
    assert pod.failures() == 2
    failure = pod.failure()
    assert failure is not None
    assert failure.reason == "ArtifactRefused"
    assert failure.severity is Severity.CRITICAL
    assert failure.message == (
        f"the pod's fetcher refused the artifact: {refused} (restarted 2 times; nothing was loaded)"
    )


def test_a_wasm_plugin_gets_its_grants_compiled_for_the_host() -> None:
    """The host enforces a module's memory and filesystem itself: the renderer hands it the
    limit and, only with the filesystem grant, the directory it preopens."""
    runtimes = Runtimes(images={"wasm": HOST})
    module = python(type="wasm", coordinate="echo", entrypoint="execute",
                    repository="https://files.example.com/echo.wasm")  # fmt: skip
    module = module.model_copy(update={"sandbox_level": SandboxLevel.SEMI_TRUSTED})
    cases: list[tuple[list[str], str, str]] = [
        ([], "", ""),
        (["filesystem"], "/data", ""),
        (["network"], "", "1"),
    ]
    for capabilities, preopen, network in cases:
        spec = module.model_copy(update={"capabilities": [Capability(c) for c in capabilities]})
        pod = by_kind(render(OWNER, spec, [policy()], runtimes=runtimes))["Deployment"]
        (host,) = pod["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e["value"] for e in host["env"]}
        assert env["WAYANG_WASM_MEMORY"] == host["resources"]["limits"]["memory"]
        assert env["WAYANG_WASM_PREOPEN"] == preopen
        assert env["WAYANG_WASM_NETWORK"] == network
    plain = by_kind(render(OWNER, python(), [policy()], runtimes=RUNTIMES))["Deployment"]
    (host,) = plain["spec"]["template"]["spec"]["containers"]
    assert "WAYANG_WASM_MEMORY" not in {e["name"] for e in host["env"]}


def test_the_text_of_a_wasm_module_is_extracted_for_the_secret_scan(tmp_path: Path) -> None:
    module = wasmtime.wat2wasm(
        '(module (memory 1) (data (i32.const 0) "token=ghp_0123456789abcdefghij\\00\\01xy"))'
    )
    (tmp_path / "artifact").write_bytes(module)
    (tmp_path / "README").write_text("not a module")
    wasmstrings.extract(tmp_path)
    text = (tmp_path / "artifact.strings.txt").read_text()
    assert text == "token=ghp_0123456789abcdefghij\n"
    assert not (tmp_path / "README.strings.txt").exists()
    with pytest.raises(ValueError, match="not a wasm binary"):
        wasmstrings.sections(b"MZ")

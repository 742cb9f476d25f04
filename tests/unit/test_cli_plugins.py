"""`kubectl wayang get | explain | approve | reject | revoke` without a cluster: the table, ages,
colour rules, output formats, the digest-swap guard and the error messages, with the API faked
at the one seam the commands use (`plugins.Session`). The real API server, webhook and RBAC are
in e2e/test_kubectl_wayang.py."""

from __future__ import annotations

import argparse
import datetime
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from tests import documents as d
from tests.unit.core.test_explain import PASSING, condition, only, plugin_with

from wayang_operator.api.descriptor import PluginDescriptor
from wayang_operator.api.resources import (
    ConditionType,
    Decision,
    KeyAlgorithm,
    PluginPhase,
    TrustedKey,
)
from wayang_operator.cli import GROUPS, _prog, build_parser, main, plugins, render
from wayang_operator.core import signing
from wayang_operator.core.explain import explain
from wayang_operator.core.gates import Reason
from wayang_operator.core.surface import digest, surface_of
from wayang_operator.kube import ClusterError, load_client_configuration

NOW = datetime.datetime(2026, 11, 22, 10, 0, tzinfo=datetime.UTC)


def subcommands(parser: argparse.ArgumentParser) -> set[str]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(action.choices)


def test_help_lists_every_command_in_exactly_one_group(capsys: pytest.CaptureFixture[str]) -> None:
    grouped = [name for _, names in GROUPS for name in names]
    assert sorted(grouped) == sorted(subcommands(build_parser())), "add the command to GROUPS"
    with pytest.raises(SystemExit):
        build_parser("kubectl wayang").parse_args(["--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: kubectl wayang")
    for title, names in GROUPS:
        section = out.split(f"{title}:\n", 1)[1].split("\n\n", 1)[0]
        assert [line.split()[0] for line in section.splitlines()] == list(names)


def test_the_program_name_follows_how_it_was_called() -> None:
    assert build_parser().prog in ("wayang", "kubectl wayang")
    assert _prog("/usr/local/bin/kubectl-wayang") == "kubectl wayang"
    assert _prog("/work/.venv/bin/wayang") == "wayang"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0s"),
        (119, "119s"),
        (125, "2m5s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600 + 600, "3h10m"),
        (15 * 3600, "15h"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (120 * 86400, "120d"),
        (800 * 86400, "2y70d"),
        (9 * 365 * 86400, "9y"),
        (-5, "0s"),
    ],
)
def test_ages_read_like_kubectl(seconds: int, shown: str) -> None:
    created = (NOW - datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert render.human_age(created, NOW) == shown


def listed(name: str, namespace: str, reason: Reason, **status: Any) -> dict[str, Any]:
    plugin = only(reason)
    plugin["metadata"] |= {
        "name": name,
        "namespace": namespace,
        "creationTimestamp": "2026-11-22T09:59:15Z",
    }
    plugin["status"] |= status
    return plugin


def ready(name: str, namespace: str) -> dict[str, Any]:
    conditions = [condition(kind, PASSING[kind], "True", "fine") for kind in ConditionType]
    plugin = plugin_with(conditions, "Ready", approvers=["approver-1", "approver-2"])
    plugin["metadata"] |= {
        "name": name,
        "namespace": namespace,
        "creationTimestamp": "2026-11-22T07:00:00Z",
    }
    plugin["status"]["workload"] = {"replicas": 1, "readyReplicas": 1, "runtimeClass": "gvisor"}
    return plugin


PLUGINS = [
    ready("b-ready", "team-b"),
    listed("a-waiting", "team-a", Reason.AWAITING_APPROVAL, phase="AwaitingApproval"),
]


def test_the_table_has_kubectls_layout_and_the_first_failing_reason() -> None:
    table = render.plugin_table(PLUGINS, now=NOW, all_namespaces=True)
    lines = table.splitlines()
    assert lines[0].split() == [
        "NAMESPACE", "NAME", "ID", "VERSION", "PHASE", "READY", "REASON", "DIGEST", "AGE",
    ]  # fmt: skip
    short = "sha256:" + d.SHA256.split(":")[1][:12] + "…"
    assert lines[1].split() == [
        "team-a", "a-waiting", "com.example/data-processor", "1.2.0", "AwaitingApproval",
        "False", "AwaitingApproval", short, "45s",
    ]  # fmt: skip
    assert lines[2].split()[4:] == ["Ready", "True", "-", short, "3h"]
    assert lines[1].index("a-waiting") == lines[0].index(" NAME ") + 1, "columns are aligned"
    assert "\033[" not in table


def test_without_all_namespaces_there_is_no_namespace_column_and_wide_adds_more() -> None:
    one = render.plugin_table(PLUGINS[:1], now=NOW, all_namespaces=False)
    assert one.split()[0] == "NAME"
    wide = render.plugin_table(PLUGINS[:1], now=NOW, all_namespaces=False, wide=True)
    header, line = wide.splitlines()
    assert header.split() == [
        "NAME", "ID", "VERSION", "SANDBOX", "PHASE", "READY", "REASON", "APPROVERS", "PODS",
        "RUNTIME", "DIGEST", "AGE",
    ]  # fmt: skip
    assert line.split()[7:11] == ["approver-1,approver-2", "1/1", "gvisor", d.SHA256]
    assert render.plugin_table([], now=NOW, all_namespaces=True) == ""


def test_phases_are_coloured_only_when_asked_and_every_phase_has_a_colour() -> None:
    assert set(render.PHASE_COLOURS) == set(PluginPhase)
    table = render.plugin_table(PLUGINS, now=NOW, all_namespaces=True, colour=True)
    assert f"{render.GREEN}Ready" in table
    assert f"{render.YELLOW}AwaitingApproval" in table
    assert (
        table.splitlines()[0]
        == render.plugin_table(PLUGINS, now=NOW, all_namespaces=True).splitlines()[0]
    ), "headers stay plain"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_needs_a_terminal_and_no_no_color() -> None:
    assert render.use_colour(Terminal(), {})
    assert not render.use_colour(io.StringIO(), {})
    assert not render.use_colour(Terminal(), {"NO_COLOR": "1"})
    assert not render.use_colour(Terminal(), {"TERM": "dumb"})


@pytest.mark.parametrize("output", ["json", "yaml"])
def test_json_and_yaml_round_trip(output: str) -> None:
    text = render.dump(render.as_list(PLUGINS), output)
    loaded = json.loads(text) if output == "json" else yaml.safe_load(text)
    assert loaded == {"apiVersion": "v1", "kind": "List", "items": PLUGINS, "metadata": {}}
    explanation = explain(PLUGINS[1], now=NOW).to_dict()
    text = render.dump(explanation, output)
    assert (json.loads(text) if output == "json" else yaml.safe_load(text)) == explanation


def test_explanation_text_lists_steps_and_remedies() -> None:
    text = render.explanation_text(explain(PLUGINS[1], now=NOW))
    lines = text.splitlines()
    assert lines[0].startswith("team-a/a-waiting is awaiting approval: Awaiting approval:")
    assert "  ok       Validated" in text
    assert "  BLOCKED  Approved" in text
    assert "  -        Ready" in text
    assert lines[-1] == (
        "  1. Approved: An approver runs: kubectl wayang approve a-waiting -n team-a --reason '...'"
    )
    assert "\033[" not in text
    assert render.RED in render.explanation_text(explain(PLUGINS[1], now=NOW), colour=True)


# --------------------------------------------------------------------------------------------
# The commands, with the API faked


class FakeApi:
    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.objects = objects
        self.created: list[dict[str, Any]] = []
        self.refuse: Exception | None = None
        """Raised by the next list (get -A) or create (approve)."""

    async def list_objects(self, plural: str, namespace: str | None) -> list[dict[str, Any]]:
        if self.refuse:
            raise self.refuse
        return [
            o
            for o in self.objects
            if o["kind"].lower() + "s" == plural and namespace in (None, o["metadata"]["namespace"])
        ]

    async def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return next(
            (
                o
                for o in self.objects
                if o["kind"].lower() + "s" == plural
                and o["metadata"]["namespace"] == namespace
                and o["metadata"]["name"] == name
            ),
            None,
        )

    async def namespace_labels(self, name: str) -> dict[str, str]:
        return {}

    async def create_new(self, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.refuse:
            raise self.refuse
        created = {**body, "metadata": {**body["metadata"], "name": "x-1", "namespace": namespace}}
        self.created.append(created)
        return created


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    fake = FakeApi([dict(p) for p in PLUGINS])

    class Session:
        def __init__(self, args: argparse.Namespace) -> None:
            self.namespace = getattr(args, "namespace", None) or "team-a"
            self.api = fake

    monkeypatch.setattr(plugins, "Session", Session)
    return fake


def test_get_prints_the_namespace_table_plain_when_piped(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["get"]) == 0
    out = capsys.readouterr().out
    assert out.split()[0] == "NAME"
    assert "a-waiting" in out
    assert "b-ready" not in out
    assert "\033[" not in out
    assert main(["get", "-A", "-o", "yaml"]) == 0
    assert len(yaml.safe_load(capsys.readouterr().out)["items"]) == 2
    assert main(["get", "-n", "team-c"]) == 0
    assert capsys.readouterr().err == "No plugins found in team-c namespace.\n"
    assert main(["get", "nope"]) == 1
    assert 'Plugin "nope" not found in namespace team-a' in capsys.readouterr().err


def test_explain_in_text_and_yaml(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "a-waiting"]) == 0
    assert "kubectl wayang approve a-waiting -n team-a" in capsys.readouterr().out
    assert main(["explain", "a-waiting", "-o", "yaml"]) == 0
    document = yaml.safe_load(capsys.readouterr().out)
    assert document["phase"] == "AwaitingApproval"
    assert main(["explain", "gone", "-n", "team-z"]) == 1
    assert capsys.readouterr().err == (
        'kubectl wayang: error: Plugin "gone" not found in namespace team-z\n'
    )


def test_approve_sends_the_exact_artifact_and_no_approver(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["approve", "a-waiting", "--reason", "reviewed", "--digest", d.SHA256]) == 0
    (body,) = api.created
    assert body["metadata"]["generateName"] == (f"a-waiting-approve-{d.SHA256.split(':')[1][:8]}-")
    assert body["metadata"]["labels"] == {"wayang.io/plugin": "a-waiting"}
    powers = surface_of(PluginDescriptor.model_validate(d.descriptor(), by_alias=True))
    assert body["spec"] == {
        "plugin": "a-waiting",
        "pluginId": "com.example/data-processor",
        "version": "1.2.0",
        "digest": d.SHA256,
        "decision": "Approve",
        "reason": "reviewed",
        "surfaceDigest": digest(powers),
    }, "no approver: the webhook stamps it; the surface shown is the one approved"
    shown = capsys.readouterr()
    assert "pluginapproval.wayang.io/x-1 created: Approve" in shown.out
    assert "Approve of Plugin a-waiting in team-a, these powers" in shown.err
    assert "  sandbox: semi-trusted" in shown.err
    assert "  capabilities: none" in shown.err


def test_a_signed_approval_for_git_is_printed_not_created(
    api: FakeApi, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    key = signing.generate(KeyAlgorithm.ED25519)
    (tmp_path / "alice.key").write_bytes(signing.private_pem(key))
    assert (
        main(["approve", "a-waiting", "--reason", "ok", "--sign", str(tmp_path / "alice.key")]) == 0
    )
    assert api.created == []
    manifest = yaml.safe_load(capsys.readouterr().out)
    assert manifest["metadata"]["namespace"] == "team-a"
    assert manifest["metadata"]["name"].endswith("-alice")
    spec = manifest["spec"]
    fields = signing.ApprovalFields(
        "team-a", "a-waiting", spec["pluginId"], spec["version"], spec["digest"],
        spec["surfaceDigest"], "Approve", "ok",
    )  # fmt: skip
    entry = TrustedKey(
        name="alice", algorithm=KeyAlgorithm.ED25519, public_key=signing.public_pem(key).decode()
    )
    assert signing.verify_approval(fields, spec["signature"], [entry]).verified


def test_a_digest_other_than_the_live_one_is_refused_and_nothing_is_sent(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    other = "sha256:" + "f" * 64
    assert main(["revoke", "a-waiting", "--reason", "r", "--digest", other]) == 1
    assert api.created == []
    err = capsys.readouterr().err
    assert f"you reviewed digest {other} but the Plugin now has digest {d.SHA256}" in err


def test_reason_is_required(api: FakeApi) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["reject", "a-waiting"])
    assert exit_info.value.code == 2


def api_error(status: int, message: str) -> ApiException:
    error = ApiException(status=status, reason="Forbidden")
    error.body = json.dumps({"kind": "Status", "message": message})
    return error


@pytest.mark.parametrize(
    ("refusal", "said"),
    [
        (
            api_error(403, 'User "p" cannot create resource "pluginapprovals"'),
            "cannot create pluginapprovals in namespace team-a: "
            'User "p" cannot create resource "pluginapprovals"',
        ),
        (
            urllib3.exceptions.MaxRetryError(None, "/apis", "Connection refused"),  # type: ignore[arg-type]
            "no cluster reachable at ",
        ),
    ],
)
def test_refusals_are_one_sentence(
    api: FakeApi, capsys: pytest.CaptureFixture[str], refusal: Exception, said: str
) -> None:
    api.refuse = refusal
    command = ["get", "-A"] if "reachable" in said else ["approve", "a-waiting", "--reason", "x"]
    assert main(command) == 1
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("kubectl wayang: error: "), "the powers shown first, then the error"
    assert said in last
    assert "Traceback" not in err


# --------------------------------------------------------------------------------------------
# --wait


def approval(phase: str | None) -> dict[str, Any]:
    return {"status": {"phase": phase, "message": "why"}} if phase else {}


def test_waiting_ends_when_the_plugin_reacted() -> None:
    waiting = explain(PLUGINS[1], now=NOW)
    assert plugins.verdict(waiting, approval(None), Decision.APPROVE) is None
    ready = explain(PLUGINS[0], now=NOW)
    assert plugins.verdict(ready, approval(None), Decision.APPROVE) is None
    assert plugins.verdict(ready, approval(None), Decision.APPROVE, patient=True) == (
        True,
        "Ready",
    ), "an approval that changed nothing gets no phase: the plugin alone decides"
    assert plugins.verdict(waiting, approval("Stale"), Decision.APPROVE) == (
        False,
        "the approval is Stale: why",
    )
    done = plugins.verdict(waiting, approval("InForce"), Decision.APPROVE)
    assert done is not None
    assert done[0]
    assert "still waits" in done[1], "another approver is needed: waiting longer is pointless"
    assert plugins.verdict(explain(PLUGINS[0], now=NOW), approval("InForce"), Decision.APPROVE) == (
        True,
        "Ready",
    )
    revoked = listed("r", "team-a", Reason.REVOKED, phase="Revoked")
    deploying = explain(listed("x", "team-a", Reason.DEPLOYING, phase="Deploying"), now=NOW)
    assert plugins.verdict(deploying, approval("InForce"), Decision.APPROVE) is None
    assert plugins.verdict(deploying, approval("InForce"), Decision.REVOKE) is None
    for reason in (Reason.UNLOADED, Reason.NOT_MANAGED):
        workload = next(
            c for c in revoked["status"]["conditions"] if c["type"] == "WorkloadAvailable"
        )
        workload["reason"] = reason.value
        outcome = plugins.verdict(explain(revoked, now=NOW), approval("InForce"), Decision.REVOKE)
        assert outcome == (True, "revoked; nothing runs")
    scan = explain(listed("s", "team-a", Reason.SCAN_FAILED, phase="Blocked"), now=NOW)
    failed = plugins.verdict(scan, approval("InForce"), Decision.APPROVE)
    assert failed is not None
    assert not failed[0]
    assert failed[1].startswith("approved, but Scanned blocks it: Blocked by scan")


def test_get_colours_the_phase_on_a_terminal_unless_no_color(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    terminal = Terminal()
    monkeypatch.setattr("sys.stdout", terminal)
    assert main(["get"]) == 0
    assert f"{render.YELLOW}AwaitingApproval" in terminal.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    plain = Terminal()
    monkeypatch.setattr("sys.stdout", plain)
    assert main(["get"]) == 0
    assert "AwaitingApproval" in plain.getvalue()
    assert "\033[" not in plain.getvalue()


@pytest.fixture
def client_configuration() -> Iterator[None]:
    """Loading a kubeconfig sets the client's process-wide default: put the old one back."""
    saved = client.Configuration.get_default_copy()
    yield
    client.Configuration.set_default(saved)


@pytest.mark.usefixtures("client_configuration")
def test_the_default_namespace_is_the_contexts_as_for_kubectl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [
            {"name": "plain", "context": {"cluster": "c", "user": "u"}},
            {"name": "tenant", "context": {"cluster": "c", "user": "u", "namespace": "team-a"}},
        ],
        "current-context": "tenant",
    }
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(path))
    assert load_client_configuration() == "team-a"
    assert load_client_configuration(context="plain") == "default"
    monkeypatch.delenv("KUBECONFIG")
    assert load_client_configuration(str(path), "tenant") == "team-a"
    with pytest.raises(ClusterError, match="no usable kubeconfig"):
        load_client_configuration(str(path), "no-such-context")

"""The user documentation stays executable and complete, checked without a cluster:

- every page under docs/ parses (console blocks well formed, here-documents closed);
- every `##` section of every page that has a `$` command is run by the e2e story
  (e2e/docs.py STORY) exactly once, and the story names no section that does not exist: a new
  page or section with commands that nobody added to the story fails here, instead of rotting
  unexecuted;
- every `$` command of the README's quick start is a command some story page runs verbatim;
- the output matcher and the failure annotation behave as the runner's docstring promises;
- the PluginPolicy field tables in docs/policy.md are exactly what the generator writes from
  the committed JSON Schema, and the YAML examples in policy.md are valid PluginPolicies.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from e2e import docs

from wayang_operator.manifests.loader import Document
from wayang_operator.manifests.sources import load_paths
from wayang_operator.manifests.validate import Outcome, results_for
from wayang_operator.schemagen import policydoc

PAGES = sorted(docs.DOCS.glob("*.md"))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_page_parses(page: Path) -> None:
    """A page the runner cannot read (output before a command, an unclosed here-document or
    code block) would be skipped silently or crash the e2e run late."""
    for command in docs.parse_file(page):
        assert command.script.strip(), command.where
        assert not command.script.startswith("$"), command.where


def test_every_section_with_commands_is_in_the_story_once() -> None:
    """No page, and no section of one, is left out of the e2e run (or run twice)."""
    covered: dict[tuple[str, str], int] = {}
    for step in docs.STORY:
        names = step.sections or tuple(docs.sections(docs.parse_file(docs.DOCS / step.page)))
        assert names, f"{step.page}: a story step that runs nothing"
        for name in names:
            covered[(step.page, name)] = covered.get((step.page, name), 0) + 1
    wanted = {
        (page.name, section) for page in PAGES for section in docs.sections(docs.parse_file(page))
    }
    assert sorted(wanted - set(covered)) == [], "sections with commands the story never runs"
    assert sorted(set(covered) - wanted) == [], "story sections that have no commands"
    assert {k: n for k, n in covered.items() if n > 1} == {}, "sections run twice"


def test_each_step_runs_as_a_known_persona() -> None:
    known = {docs.ADMIN, docs.PUBLISHER, docs.APPROVER}
    assert {step.persona for step in docs.STORY} <= known
    for step in docs.STORY:
        assert docs.step_commands(step), step


def _readme_quick_start() -> list[docs.Command]:
    text = docs.README.read_text()
    match = re.search(r"^## Quick start\n(.*?)(?=^## )", text, re.MULTILINE | re.DOTALL)
    assert match, "the README has no '## Quick start' section"
    return docs.parse(match.group(1), "README.md")


def test_the_readme_quick_start_commands_are_run_by_the_story() -> None:
    """A quick-start command is run verbatim by some page of the story, so it works."""
    executed = {command.script for step in docs.STORY for command in docs.step_commands(step)}
    for command in _readme_quick_start():
        assert command.script in executed, f"README quick start: {command.script!r} is never run"


# --------------------------------------------------------------------------------------------
# The runner's rules


def test_console_blocks_parse_into_commands_outputs_and_annotations() -> None:
    page = """# Title

```console
$ echo one
one
$ false   # fails: nope
```

## Second

```sh
$ not run
```

```console
$ cat > f.yaml <<'EOF'
a: $HOME
EOF
$ kubectl get x \\
    -n y
NAME ...
```
"""
    commands = docs.parse(page, "p.md")
    assert [c.first_line for c in commands] == [
        "echo one",
        "false   # fails: nope",
        "cat > f.yaml <<'EOF'",
        "kubectl get x \\",
    ]
    assert [c.section for c in commands] == ["Title", "Title", "Second", "Second"]
    assert commands[0].output == ("one",)
    assert commands[0].fails is None
    assert commands[1].fails == "nope"
    assert commands[2].script == "cat > f.yaml <<'EOF'\na: $HOME\nEOF"
    assert commands[2].output == ()
    assert commands[3].script == "kubectl get x \\\n-n y"
    assert commands[3].output == ("NAME ...",)


def test_output_before_a_command_is_an_error() -> None:
    with pytest.raises(docs.ParseError):
        docs.parse("```console\nstray output\n$ echo\n```\n", "p.md")


def test_an_unclosed_heredoc_is_an_error() -> None:
    with pytest.raises(docs.ParseError):
        docs.parse("```console\n$ cat <<EOF\nno end\n```\n", "p.md")


@pytest.mark.parametrize(
    ("shown", "actual", "ok"),
    [
        (["echo   1.0.0   untrusted   AwaitingApproval   ..."],
         "NAME VERSION\necho  1.0.0  untrusted  AwaitingApproval  False  4s", True),
        (["sha256-16055e…   FAILED"], "sha256-16055e0123abcd   FAILED   0", True),
        (["...", "b"], "a\nb", True),
        (["b", "a"], "a\nb", False),  # order matters
        (["echo Ready"], "echo AwaitingApproval", False),
        (["Ready echo"], "echo Ready", False),  # tokens in order within a line
        ([], "anything", True),
    ],
)  # fmt: skip
def test_output_is_matched_loosely_but_in_order(shown: list[str], actual: str, ok: bool) -> None:
    assert (docs.output_mismatch(shown, actual) is None) is ok


@pytest.mark.parametrize(
    ("fails", "code", "output", "ok"),
    [
        (None, 0, "", True),
        (None, 1, "", False),
        ("", 1, "", True),
        ("", 0, "", False),
        ("forbidden", 1, "Error: FORBIDDEN by RBAC", True),
        ("forbidden", 1, "not found", False),
    ],
)
def test_a_command_must_exit_as_its_page_says(
    fails: str | None, code: int, output: str, ok: bool
) -> None:
    command = docs.Command("p.md", 1, "s", "x", (), fails)
    assert (docs.judge(command, code, output) is None) is ok


def test_a_page_runs_in_one_shell_state_with_the_persona_kubeconfig(tmp_path: Path) -> None:
    """Variables and the folder persist between a page's commands; a failing command that the
    page expects to succeed stops the run with its page and line."""
    pages = tmp_path / "docs"
    pages.mkdir()
    (pages / "a.md").write_text(
        "# A\n\n```console\n$ export GREETING=hello\n$ mkdir -p sub && cd sub\n"
        "$ echo $GREETING from $(basename $PWD) as $(grep current-context $KUBECONFIG)\n"
        "hello from sub ... someone\n$ exit 3   # fails\n```\n"
    )
    (pages / "b.md").write_text('# B\n\n```console\n$ test -n "$MARK"\n$ false\n```\n')
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump({"contexts": [{"name": "ctx-1"}, {"name": "admin"}], "current-context": ""})
    )
    environment = docs.Environment(
        workdir=tmp_path / "work",
        kubeconfig=kubeconfig,
        contexts={"someone": "ctx-1", docs.ADMIN: "admin"},
        variables={"MARK": "set"},
    )
    environment.workdir.mkdir()
    seen: list[docs.Progress] = []
    steps = [docs.Step("a.md", "someone", ()), docs.Step("b.md", docs.ADMIN, ())]
    with pytest.raises(docs.DocsError, match=r"b\.md:5"):
        docs.run_pages(steps, environment, seen.append, docs=pages)
    results = [event.result for event in seen if event.result is not None]
    assert [r.problem is None for r in results] == [True, True, True, True, True, False]
    assert "hello from sub" in results[2].output


# --------------------------------------------------------------------------------------------
# The policy reference


def test_the_policy_field_tables_are_generated_from_the_schema() -> None:
    """Regenerating the tables gives the committed page: the reference cannot drift from the
    models (their docstrings are the descriptions). Fix: python -m
    wayang_operator.schemagen.policydoc docs/policy.md"""
    page = (docs.DOCS / "policy.md").read_text()
    assert policydoc.regenerate(page, policydoc.load_schema()) == page


def test_the_policy_tables_cover_every_field_of_the_schema() -> None:
    schema = policydoc.load_schema()
    tables = {table.path: table for table in policydoc.tables(schema)}
    assert "spec" in tables
    spec_fields = {row.name.strip("`") for row in tables["spec"].rows}
    assert spec_fields == set(schema["$defs"]["PluginPolicySpec"]["properties"])
    scan = {row.name.strip("`"): row for row in tables["spec.scan"].rows}
    assert scan["maxSeverity"].default == '`"MEDIUM"`'
    assert "CRITICAL" in scan["maxSeverity"].type
    assert all(row.description for table in tables.values() for row in table.rows), (
        "a PluginPolicy field without a docstring in api/resources.py"
    )


def test_the_policy_examples_are_valid(tmp_path: Path) -> None:
    """The hand-written YAML examples around the tables pass `wayang validate`."""
    page = (docs.DOCS / "policy.md").read_text()
    blocks = re.findall(r"^```yaml\n(.*?)^```", page, re.MULTILINE | re.DOTALL)
    assert len(blocks) >= 3
    for number, block in enumerate(blocks):
        path = tmp_path / f"example-{number}.yaml"
        path.write_text(block)
        for loaded in load_paths([str(path)]):
            assert isinstance(loaded, Document), loaded
            for result in results_for(loaded):
                assert result.outcome is Outcome.VALID, (block, result.problems)

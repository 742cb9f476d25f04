"""Executable documentation: every command a page under docs/ shows is run, in order, against a
real cluster, as the person the page is written for.

A page shows commands in fenced blocks marked ```console, one per line starting with `$ `;
the lines after a command, up to the next `$` line, are its output as the page shows it:

    ```console
    $ kubectl wayang get echo -n team-a
    NAME   VERSION   SANDBOX     PHASE              ...
    echo   1.0.0     untrusted   AwaitingApproval   ...
    $ kubectl wayang approve echo -n team-a --reason "mine"   # fails: forbidden
    ```

- A command runs with bash, in one shell state per page and person: variables a command sets and the
  folder it changes to are there for the page's next command (the state is saved after each
  command and restored before the next). `set -o pipefail` is on, so `kubectl ... | jq` fails
  when kubectl does. A line ending in `\\` continues on the next; a here-document
  (`cat > f.yaml <<EOF`) takes the lines up to its terminator.
- A command must succeed (exit 0), unless it ends with the bash comment `# fails` (it must exit
  non-zero) or `# fails: TEXT` (non-zero, and its output must contain TEXT, ignoring case). The
  comment changes nothing when a reader pastes the line.
- Shown output is checked loosely, so that ages, digests and column widths may differ: each shown
  line must match an output line (stdout and stderr together), in order, with its
  whitespace-separated tokens appearing in that order; `...` (or `…`) stands for anything, as a
  token or inside one (`sha256-16055e…`); a line of only `...` matches nothing in particular.
  Show only what the reader should look for.
- Waiting is a command like any other: `kubectl wait --for=jsonpath='{.status.phase}'=Ready`.

A page belongs to a persona (the admin, publisher-1, approver-1): its commands run with a
kubeconfig whose current context is that person's, in a working folder shared by all pages
(with `charts/`, `crds/` and a copy of `examples/`), so a file one person writes (a public key)
is there for the next. The story (STORY) runs pages, section by section (`##` headings), in the
order a real installation happens: the admin installs, the publisher writes, signs and
publishes, the admin trusts the publisher's key, the approvers approve, the publisher sees the
plugin Ready and publishes new versions, the troubleshooting page inspects what happened, the
admin uninstalls. tests/unit/test_docs_commands.py checks that every section of every page with
a command is in the story exactly once, so no page is left out.

`run_pages(steps, environment, progress=...)` is the runner (e2e/test_docs.py, `make demo`);
`prepare_environment(...)` builds what the pages assume: the operator and plugin images on the
local node, trivy's offline database and an archive folder of the images by digest, and the
variables the pages name (`$WAYANG_IMAGE_REPOSITORY`, `$IMAGE`, `$DIGEST`, ...).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from e2e.localcluster.node import Node

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
VENV_BIN = ROOT / ".venv" / "bin"
COMMAND_TIMEOUT = 600.0
"""Seconds any one command may take (`helm install --wait` is the slowest)."""

_FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*(\S*)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FAILS = re.compile(r"\s#\s*fails(?::\s*(?P<text>.*?))?\s*$")
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)(?P<word>[A-Za-z_][A-Za-z0-9_]*)\1")
_WILDCARD = re.compile(r"\.\.\.|…")


# --------------------------------------------------------------------------------------------
# Parsing


@dataclass(frozen=True)
class Command:
    """One `$` command of a page, with the output the page shows for it."""

    page: str
    """The page's file name, e.g. `admin.md`."""
    line: int
    """1-based line of the `$` in the page."""
    section: str
    """The `##` heading it is under (the page's `#` title before the first one)."""
    script: str
    """What bash runs: the command, with its continuation or here-document lines."""
    output: tuple[str, ...]
    """Output lines as shown (blank ones dropped)."""
    fails: str | None = None
    """None: must succeed; "": must fail; else must fail with this text in its output."""

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def first_line(self) -> str:
        return self.script.splitlines()[0] if self.script else ""


class ParseError(ValueError):
    """A console block the runner cannot read (output before any command, an open heredoc)."""


def parse(text: str, page: str) -> list[Command]:
    """The commands of a markdown page's ```console blocks, in order."""
    commands: list[Command] = []
    section = ""
    seen_h2 = False
    fence: str | None = None
    console = False
    block: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        opened = _FENCE.match(line)
        if fence is None:
            if opened:
                fence, console, block = opened.group(2), opened.group(3) == "console", []
                continue
            heading = _HEADING.match(line)
            if heading:
                level = len(heading.group(1))
                if level == 2 or (level == 1 and not seen_h2):
                    section = heading.group(2)
                    seen_h2 = seen_h2 or level == 2
            continue
        closing = opened and not opened.group(3) and opened.group(2)[0] == fence[0]
        if closing and len(opened.group(2)) >= len(fence):  # type: ignore[union-attr]
            if console:
                commands.extend(_block(block, page, section))
            fence = None
            continue
        block.append((number, line))
    if fence is not None:
        raise ParseError(f"{page}: a code block is never closed")
    return commands


def _block(lines: list[tuple[int, str]], page: str, section: str) -> Iterator[Command]:
    index = 0
    while index < len(lines):
        number, line = lines[index]
        stripped = line.strip()
        if not stripped:
            index += 1
            continue
        if not stripped.startswith("$ ") and stripped != "$":
            raise ParseError(f"{page}:{number}: output before any `$` command in a console block")
        script = [stripped[2:]]
        index += 1
        while script[-1].endswith("\\") and index < len(lines):
            script.append(lines[index][1].strip())
            index += 1
        heredoc = _HEREDOC.search(" ".join(script))
        if heredoc:
            word = heredoc.group("word")
            while True:
                if index >= len(lines):
                    raise ParseError(f"{page}:{number}: here-document {word} is never closed")
                body = lines[index][1]
                script.append(body)
                index += 1
                if body.strip() == word:
                    break
        output: list[str] = []
        while index < len(lines) and not lines[index][1].strip().startswith("$ "):
            if lines[index][1].strip():
                output.append(lines[index][1].rstrip())
            index += 1
        fails = _FAILS.search(script[0])
        yield Command(
            page=page,
            line=number,
            section=section,
            script="\n".join(script),
            output=tuple(output),
            fails=None if fails is None else (fails.group("text") or ""),
        )


def parse_file(path: Path) -> list[Command]:
    return parse(path.read_text(), path.name)


def sections(commands: Iterable[Command]) -> list[str]:
    """The sections that hold commands, in page order."""
    seen: list[str] = []
    for command in commands:
        if command.section not in seen:
            seen.append(command.section)
    return seen


# --------------------------------------------------------------------------------------------
# Output checks


def _pattern(expected: str) -> re.Pattern[str] | None:
    pieces: list[str] = []
    for token in expected.split():
        pieces.extend(re.escape(part) for part in _WILDCARD.split(token) if part)
    if not pieces:
        return None
    return re.compile(".*?".join(pieces))


def output_mismatch(expected: Sequence[str], actual: str) -> str | None:
    """None when every shown line matches an actual line, in order (see the module's rules);
    else which shown line was not found."""
    lines = actual.splitlines()
    position = 0
    for shown in expected:
        pattern = _pattern(shown)
        if pattern is None:
            continue
        for index in range(position, len(lines)):
            if pattern.search(lines[index]):
                position = index + 1
                break
        else:
            return f"shown output line not found (in order): {shown.strip()!r}"
    return None


# --------------------------------------------------------------------------------------------
# The story


@dataclass(frozen=True)
class Step:
    """Sections of one page, run as one persona."""

    page: str
    persona: str
    sections: tuple[str, ...]


ADMIN = "admin"
PUBLISHER = "publisher-1"
APPROVER = "approver-1"

STORY: tuple[Step, ...] = (
    Step(
        "admin.md",
        ADMIN,
        (
            "Install",
            "Sandboxes: the gVisor RuntimeClass",
            "Scanning without internet access",
            "Who may publish",
            "Who may approve",
            "Policies",
            "The audit store: PostgreSQL",
        ),
    ),
    Step(
        "publisher.md",
        PUBLISHER,
        ("Before you start", "Write the manifest", "Check it before you push", "Sign it"),
    ),
    Step("admin.md", ADMIN, ("Trust a publisher's key",)),
    Step(
        "publisher.md",
        PUBLISHER,
        ("Publish it", "Watch it", "Approving your own plugin"),
    ),
    Step("approver.md", APPROVER, ("What awaits you", "Review", "Decide")),
    Step(
        "publisher.md",
        PUBLISHER,
        ("See it run", "Disable it", "When the scan blocks it", "A new version"),
    ),
    Step(
        "approver.md",
        APPROVER,
        ("Self-approval is refused", "Reject and revoke", "Verify the audit log"),
    ),
    Step("policy.md", ADMIN, ("Try a policy before you apply it",)),
    Step("troubleshooting.md", ADMIN, ()),
    Step("types.md", PUBLISHER, ("Push and pin", "Scanned, whatever the type")),
    Step("types.md", APPROVER, ("Approve every type",)),
    Step("types.md", ADMIN, ("Who may call",)),
    Step("types.md", PUBLISHER, ("Call every type",)),
    Step("admin.md", ADMIN, ("Metrics", "Upgrades", "Uninstall")),
)
"""The order a real installation happens in; an empty `sections` runs the whole page."""


def story_pages() -> list[str]:
    return sorted({step.page for step in STORY})


def step_commands(step: Step, docs: Path = DOCS) -> list[Command]:
    commands = parse_file(docs / step.page)
    if not step.sections:
        return commands
    missing = [s for s in step.sections if s not in sections(commands)]
    if missing:
        raise ParseError(f"{step.page} has no section with commands named {missing}")
    return [c for c in commands if c.section in step.sections]


# --------------------------------------------------------------------------------------------
# Running


@dataclass
class Environment:
    """What the pages run in."""

    workdir: Path
    """The shared working folder (charts/, crds/, examples/, and whatever the pages write)."""
    kubeconfig: Path
    contexts: dict[str, str]
    """Persona -> context in `kubeconfig` (the admin's under ADMIN)."""
    variables: dict[str, str] = field(default_factory=dict)
    """Shell variables the pages name: images, digests, folders."""
    path: tuple[Path, ...] = ()
    """Folders put first on PATH (kubectl, helm; .venv/bin is always there)."""


@dataclass(frozen=True)
class Result:
    command: Command
    persona: str
    returncode: int
    output: str
    seconds: float
    problem: str | None
    """None when the command did what the page says."""


@dataclass(frozen=True)
class Progress:
    """What `run_pages` reports: a command about to run (result None), or its result."""

    step: Step
    command: Command
    result: Result | None


class DocsError(AssertionError):
    """A command did not do what its page says; the message has the page, line and output."""

    def __init__(self, result: Result) -> None:
        command = result.command
        super().__init__(
            f"{command.where} ({command.section}, as {result.persona}): {result.problem}\n"
            f"$ {command.script}\n--- exit {result.returncode}, output:\n{result.output[-4000:]}"
        )
        self.result = result


def persona_kubeconfig(environment: Environment, persona: str) -> Path:
    """A copy of the kubeconfig whose current context is the persona's; the test users'
    contexts are renamed to the users' names (`--context approver-2` in a page)."""
    config: dict[str, Any] = yaml.safe_load(environment.kubeconfig.read_text())
    renames = {context: user for user, context in environment.contexts.items() if user != ADMIN}
    for entry in config.get("contexts") or []:
        entry["name"] = renames.get(entry["name"], entry["name"])
    current = environment.contexts[persona]
    config["current-context"] = renames.get(current, current)
    folder = environment.workdir / ".kube"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{persona}.config"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


_WRAPPER = """\
set -o pipefail -o allexport
if [ -f "$__DOCS_STATE.env" ]; then source "$__DOCS_STATE.env"; fi
if [ -f "$__DOCS_STATE.cwd" ]; then cd "$(cat "$__DOCS_STATE.cwd")" || exit 99; fi
source "$__DOCS_STATE.command"
__docs_rc=$?
export -p | grep -v -E '^declare -x (PWD|OLDPWD|SHLVL|_|__DOCS_STATE)=' > "$__DOCS_STATE.env"
pwd > "$__DOCS_STATE.cwd"
exit $__docs_rc
"""


def _base_env(environment: Environment, kubeconfig: Path) -> dict[str, str]:
    home = environment.workdir / ".home"
    home.mkdir(exist_ok=True)
    path = [str(VENV_BIN), *(str(p) for p in environment.path), "/usr/local/bin", "/usr/bin"]
    path.append("/bin")
    env = {
        "PATH": os.pathsep.join(path),
        "HOME": str(home),
        "KUBECONFIG": str(kubeconfig),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "NO_COLOR": "1",
        # stdout to a pipe is block-buffered: without this, a command's stdout would land after
        # its stderr progress, not in the order a terminal shows them
        "PYTHONUNBUFFERED": "1",
    }
    env.update(environment.variables)
    return env


def run_command(
    command: Command, environment: Environment, persona: str, state: Path, env: Mapping[str, str]
) -> Result:
    Path(f"{state}.command").write_text(command.script + "\n")
    if not Path(f"{state}.cwd").exists():
        Path(f"{state}.cwd").write_text(str(environment.workdir))
    started = time.monotonic()
    try:
        done = subprocess.run(
            ["bash", "-c", _WRAPPER],
            env={**env, "__DOCS_STATE": str(state)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        returncode, output = done.returncode, done.stdout
    except subprocess.TimeoutExpired as expired:
        partial = expired.output or ""
        returncode = -1
        output = partial if isinstance(partial, str) else partial.decode(errors="replace")
        output += f"\n(timed out after {COMMAND_TIMEOUT:.0f}s)"
    seconds = time.monotonic() - started
    return Result(command, persona, returncode, output, seconds, judge(command, returncode, output))


def judge(command: Command, returncode: int, output: str) -> str | None:
    """Whether the command did what the page says: None if so, else what differs."""
    if command.fails is None and returncode != 0:
        return f"exited {returncode}; the page expects it to succeed"
    if command.fails is not None:
        if returncode == 0:
            return "succeeded; the page expects it to fail"
        if command.fails and command.fails.lower() not in output.lower():
            return f"failed, but without {command.fails!r} in its output"
    return output_mismatch(command.output, output)


def run_pages(
    steps: Sequence[Step],
    environment: Environment,
    progress: Callable[[Progress], None] | None = None,
    *,
    docs: Path = DOCS,
    stop_on_failure: bool = True,
) -> list[Result]:
    """Run the steps' commands in order; raise DocsError at the first command that does not
    do what its page says (or, with stop_on_failure=False, go on and return every result).
    Every command and its whole output go to `<workdir>/.docs-state/transcript.txt`."""
    results: list[Result] = []
    states = environment.workdir / ".docs-state"
    states.mkdir(parents=True, exist_ok=True)
    transcript = states / "transcript.txt"
    for step in steps:
        kubeconfig = persona_kubeconfig(environment, step.persona)
        env = _base_env(environment, kubeconfig)
        state = states / f"{Path(step.page).stem}.{step.persona}"
        for command in step_commands(step, docs):
            if progress:
                progress(Progress(step, command, None))
            result = run_command(command, environment, step.persona, state, env)
            results.append(result)
            with transcript.open("a") as record:
                record.write(
                    f"### {command.where} as {step.persona}: exit {result.returncode}, "
                    f"{result.problem or 'ok'}\n$ {command.script}\n{result.output}\n"
                )
            if progress:
                progress(Progress(step, command, result))
            if result.problem and stop_on_failure:
                raise DocsError(result)
    return results


def describe(event: Progress) -> str:
    """One line for a progress display."""
    command = event.command
    if event.result is None:
        return f"[{event.step.persona}] {command.where} $ {command.first_line}"
    verdict = "ok" if event.result.problem is None else f"FAILED: {event.result.problem}"
    return f"    {verdict} ({event.result.seconds:.1f}s, exit {event.result.returncode})"


# --------------------------------------------------------------------------------------------
# The environment the pages assume


def prepare_environment(
    folder: Path,
    *,
    kubeconfig: Path,
    contexts: Mapping[str, str],
    kubectl: Path,
    node: Node,
) -> Environment:
    """Everything the pages assume, on the local cluster with its node:

    - the operator image and the echo sample image imported into the node's containerd, where
      the chart's Deployment and the plugin's pods find them ("where you pushed the image");
    - trivy's vulnerability database in a folder the chart mounts as its offline cache
      (`$TRIVY_CACHE`), and the images the pages publish, named by digest, in an archive folder
      (`$IMAGE_ARCHIVES`): the scans are real, nothing is downloaded;
    - three digests of "the echo plugin": 1.0.0 (`$DIGEST`, the runnable echo sample), a build
      with a vulnerable dependency (`$NEW_DIGEST`, the scan blocks it) and a fixed one
      (`$FIXED_DIGEST`);
    - the runtime hosts' images (`$RUNTIME_PYTHON`, `$RUNTIME_JVM`) imported into the node, the
      cluster's registry (`$REGISTRY`, its CA `$REGISTRY_CA`, `$REGISTRY_CIDR`) and what
      docs/types.md pushes to it: the echo sample's image (`$ECHO_IMAGE_LAYOUT`) and artifacts
      (`$ECHO_WHEEL`, `$ECHO_WASM`, `$ECHO_JAR`), built from source;
    - a working folder with `charts/`, `crds/` and a copy of `examples/`.
    """
    from e2e import runtimeimages, scanfixtures  # noqa: PLC0415 - builds: only when running
    from e2e.localcluster import cluster as local  # noqa: PLC0415
    from e2e.localcluster.build import ensure_built  # noqa: PLC0415

    helm = ensure_built(["helm"])["helm"]
    registry = local.registry(node.layout.cluster)
    if registry is None:
        raise RuntimeError("the local cluster has no registry: start it with `make cluster-up`")
    images = folder / "images"
    operator = runtimeimages.operator_image(node, images)
    built = runtimeimages.build_images(images, "runtime-python", "runtime-jvm", "sample-echo")
    imported = {
        name.split("/")[-1].split(":")[0]: (node.import_image(Path(info["tar"])), info)
        for name, info in built.items()
    }
    echo, echo_info = imported["sample-echo"]
    echo_name = echo.name
    # the container sample pushed to the registry: an image ID of its own, never imported (the
    # kubelet would then verify the imported names of that ID by pulling them: test_registry.py)
    pushed_echo = runtimeimages.sample_variant(
        "echo", folder / "registry-echo", labels={"io.wayang.example": "types"}
    )
    artifacts = runtimeimages.sample_artifacts(folder / "artifacts")
    fixtures = scanfixtures.images(folder / "scan-images")

    cache, archives = scanfixtures.for_operator_pods(
        folder,
        {
            echo.digest: Path(echo_info["layout"]),
            fixtures["vulnerable"].digest: Path(fixtures["vulnerable"].layout),
            fixtures["clean"].digest: Path(fixtures["clean"].layout),
        },
    )

    workdir = folder / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("charts", "crds"):
        link = workdir / name
        if not link.exists():
            link.symlink_to(ROOT / name)
    shutil.copytree(ROOT / "examples", workdir / "examples", dirs_exist_ok=True)
    return Environment(
        workdir=workdir,
        kubeconfig=kubeconfig,
        contexts=dict(contexts),
        path=(kubectl.parent, helm.parent),
        variables={
            "WAYANG_IMAGE_REPOSITORY": operator.repository,
            "WAYANG_IMAGE_DIGEST": operator.digest,
            "IMAGE": echo.repository,
            "DIGEST": echo.digest,
            "NEW_DIGEST": fixtures["vulnerable"].digest,
            "FIXED_DIGEST": fixtures["clean"].digest,
            "TRIVY_CACHE": str(cache),
            "IMAGE_ARCHIVES": str(archives),
            "ECHO_IMAGE_NAME": echo_name,
            "RUNTIME_PYTHON": imported["runtime-python"][0].by_digest,
            "RUNTIME_JVM": imported["runtime-jvm"][0].by_digest,
            "REGISTRY": registry.address,
            "REGISTRY_CA": str(registry.ca),
            "REGISTRY_CIDR": registry.address.rsplit(":", 1)[0] + "/32",
            "ECHO_IMAGE_LAYOUT": str(pushed_echo.layout),
            "ECHO_WHEEL": artifacts["python"]["file"],
            "ECHO_WASM": artifacts["wasm"]["file"],
            "ECHO_JAR": artifacts["jar"]["file"],
        },
    )

"""Real runtime hosts (runtime-images/python/host.py) for the engine SDK's tests, one per sample,
and the injected clock, sleep and jitter source that make every delay exact."""

from __future__ import annotations

import contextlib
import copy
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_runtime_host import SAMPLES, Host, running, sample
from wayang_client import Client, PluginEntry, PluginIndex
from wayang_client.client import ReviewHook


@pytest.fixture(scope="session")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Host]]:
    """flaky, failing, echo and slow (with the shortest timeout the schema allows, 1000 ms)."""
    folder = tmp_path_factory.mktemp("sdk-hosts")
    descriptors = {
        "flaky": sample("flaky"),
        "failing": sample("failing"),
        "echo": sample("echo"),
        "slow": sample("slow", resourceProfile={"timeout": 1000}),
    }
    with contextlib.ExitStack() as stack:
        started = {
            name: stack.enter_context(running(folder / name, descriptor, SAMPLES / name))
            for name, descriptor in descriptors.items()
        }
        for host in started.values():
            host.wait_ready()
        yield started


def entry(
    host: Host,
    name: str,
    *,
    plugin: str | None = None,
    namespace: str = "",
    **handling: Any,
) -> PluginEntry:
    """The sample `plugin` (default: `name`) at `host`, as Plugin `name`, with errorHandling
    fields replaced by `handling` (camelCase; retryPolicy and circuitBreaker merged)."""
    descriptor = copy.deepcopy(sample(plugin or name))
    current = descriptor.setdefault("errorHandling", {})
    for key, value in handling.items():
        if isinstance(value, dict) and isinstance(current.get(key), dict):
            current[key] = {**current[key], **value}
        else:
            current[key] = value
    return PluginEntry.from_descriptor(
        descriptor, f"http://127.0.0.1:{host.port}", name=name, namespace=namespace
    )


@dataclass
class Time:
    """A fake monotonic clock whose sleep only records and moves it."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class Draws:
    """The jitter source: the given numbers in turn (then 0.0), each draw recorded."""

    values: list[float] = field(default_factory=list)
    drawn: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        value = self.values.pop(0) if self.values else 0.0
        self.drawn.append(value)
        return value


@dataclass
class Ids:
    """UUIDs 00000000-...-000000000001, -2, ...: run and trace ids the tests can predict."""

    issued: int = 0

    def __call__(self) -> uuid.UUID:
        self.issued += 1
        return uuid.UUID(int=(0x4 << 76) | (0x8 << 60) | self.issued)


@pytest.fixture
def clock() -> Time:
    return Time()


@pytest.fixture
def counter(tmp_path: Path) -> str:
    """A fresh call counter file for the flaky sample."""
    return str(tmp_path / "calls")


def calls(path: str) -> int:
    text = Path(path).read_text() if Path(path).exists() else ""
    return int(text or 0)


MakeClient = Callable[..., Client]


@pytest.fixture
def make_client(clock: Time) -> Iterator[MakeClient]:
    made: list[Client] = []

    def make(
        *entries: PluginEntry,
        review: ReviewHook | None = None,
        draws: Draws | None = None,
        **options: Any,
    ) -> Client:
        client = Client(
            PluginIndex(entries),
            review=review,
            sleep=clock.sleep,
            clock=clock,
            random=draws or Draws(),
            ids=Ids(),
            **options,
        )
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()

"""Dependency resolution against active plugins: capabilities, ranges, optional ones, the engine
version, and cycles, with messages that name the unmet constraint and who asked for it."""

from __future__ import annotations

from typing import Any

from tests import documents as d
from tests.documents import mutated

from wayang_operator.api.descriptor import PluginDescriptor
from wayang_operator.core.dependencies import Candidate, resolve


def plugin(name: str, plugin_id: str, version: str = "1.0.0", **changes: Any) -> Candidate:
    document = mutated(mutated(d.descriptor(), "id", plugin_id), "version", version)
    for path, value in changes.items():
        document = mutated(document, path, value)
    return Candidate(name, PluginDescriptor.model_validate(document))


PAYMENT = plugin(
    "payment",
    "acme/payment",
    requires=["security.jwt"],
    dependencies=[{"id": "acme/jwt", "version": "^2.1.0"}],
)
JWT = plugin("jwt", "acme/jwt", "2.3.0", provides=["security.jwt"])


def test_resolved_when_everything_is_active() -> None:
    outcome = resolve("payment", PAYMENT.spec, active=[JWT], namespace=[JWT], wayang_version=None)
    assert outcome.resolved


def test_missing_capability_and_dependency_are_named() -> None:
    outcome = resolve("payment", PAYMENT.spec, active=[], namespace=[JWT], wayang_version=None)
    assert not outcome.resolved
    assert outcome.message.startswith("payment waits for:")
    assert "requires security.jwt: no active plugin in the namespace provides it" in outcome.message
    assert "dependency acme/jwt ^2.1.0: none active" in outcome.message


def test_a_version_outside_the_range_is_named() -> None:
    old = plugin("jwt", "acme/jwt", "1.9.0", provides=["security.jwt"])
    outcome = resolve("payment", PAYMENT.spec, active=[old], namespace=[old], wayang_version=None)
    assert "dependency acme/jwt ^2.1.0: jwt 1.9.0" in outcome.message


def test_optional_dependencies() -> None:
    optional = plugin(
        "p", "acme/p", dependencies=[{"id": "acme/cache", "version": "^1.0.0", "optional": True}]
    )
    assert resolve("p", optional.spec, active=[], namespace=[], wayang_version=None).resolved
    wrong = plugin("cache", "acme/cache", "2.0.0")
    outcome = resolve("p", optional.spec, active=[wrong], namespace=[wrong], wayang_version=None)
    assert "optional dependency acme/cache ^1.0.0: cache 2.0.0" in outcome.message


def test_the_supported_wayang_version() -> None:
    pinned = plugin("p", "acme/p", wayangVersion=">=1.4.0 <2.0.0")
    assert resolve("p", pinned.spec, active=[], namespace=[], wayang_version="1.5.0").resolved
    outcome = resolve("p", pinned.spec, active=[], namespace=[], wayang_version="2.1.0")
    assert "wayangVersion >=1.4.0 <2.0.0: the engine is 2.1.0" in outcome.message


def test_cycles_are_reported_not_waited_on() -> None:
    a = plugin("a", "acme/a", provides=["cap.a"], requires=["cap.b"])
    b = plugin(
        "b", "acme/b", provides=["cap.b"], dependencies=[{"id": "acme/c", "version": "^1.0.0"}]
    )
    c = plugin("c", "acme/c", requires=["cap.a"])
    outcome = resolve("a", a.spec, active=[], namespace=[a, b, c], wayang_version=None)
    assert not outcome.resolved
    assert outcome.message == "dependency cycle: a -> b -> c -> a"
    disabled = plugin("c", "acme/c", requires=["cap.a"], enabled=False)
    assert not resolve(
        "a", a.spec, active=[], namespace=[a, b, disabled], wayang_version=None
    ).cycle

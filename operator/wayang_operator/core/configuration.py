"""Configuration values that come from Secrets, and the rule that keeps sensitive ones out of
every object the operator writes.

A property's value in `spec.configuration` is either inline JSON or a reference to a key of a
Secret in the plugin's namespace, written the way a pod's env var refers to one:

    configuration:
      apiKey: {secretKeyRef: {name: llm-credentials, key: api-key}}

A property declared `sensitive: true` takes its value *only* that way, and has no default: its
value then never enters the Plugin, so it cannot reach the status, Events, the audit log, the
logs or the descriptor ConfigMap, which all derive from the spec. The runtime host reads the value
from the Secret, mounted read-only into the pod. Messages about sensitive properties never quote
a value (`value_for_message`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..api.descriptor import PluginDescriptor

SECRET_KEY_REF = "secretKeyRef"  # noqa: S105 - a field name, not a secret
REDACTED = "<redacted>"


@dataclass(frozen=True, order=True)
class SecretRef:
    """One key of a Secret in the plugin's namespace."""

    name: str
    key: str


def secret_ref(value: Any) -> SecretRef | None:
    """The reference if `value` is exactly `{secretKeyRef: {name, key}}` with two strings."""
    if not isinstance(value, dict) or set(value) != {SECRET_KEY_REF}:
        return None
    ref = value[SECRET_KEY_REF]
    if not isinstance(ref, dict) or set(ref) != {"name", "key"}:
        return None
    name, key = ref.get("name"), ref.get("key")
    if not isinstance(name, str) or not isinstance(key, str) or not name or not key:
        return None
    return SecretRef(name, key)


def secret_refs(spec: PluginDescriptor) -> dict[str, SecretRef]:
    """The configuration values that come from Secrets, by property name."""
    refs = {}
    for name, value in (spec.configuration or {}).items():
        ref = secret_ref(value)
        if ref is not None:
            refs[name] = ref
    return refs


def sensitive_names(spec: PluginDescriptor) -> set[str]:
    return {prop.name for prop in spec.properties or [] if prop.sensitive}


def sensitive_problems(spec: PluginDescriptor) -> list[tuple[str, str]]:
    """(field path, message) for every sensitive value written inline; the messages never
    contain the value. Refused at admission, by `wayang validate` and by the Validated gate."""
    return sensitive_problems_raw(spec.model_dump(mode="json", by_alias=True, exclude_none=True))


def sensitive_problems_raw(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """`sensitive_problems` on a spec as it was sent, valid or not: the admission webhook must
    refuse an inline secret even in a spec that fails validation for another reason."""
    problems = []
    configuration = spec.get("configuration")
    configuration = configuration if isinstance(configuration, dict) else {}
    properties = spec.get("properties")
    for index, prop in enumerate(properties if isinstance(properties, list) else []):
        if not isinstance(prop, dict) or prop.get("sensitive") is not True:
            continue
        name = str(prop.get("name", ""))
        if prop.get("default") is not None:
            problems.append(
                (
                    f"spec.properties[{index}].default",
                    f"property {name!r} is sensitive and has no default: its value comes only "
                    f"from a Secret (spec.configuration.{name}: "
                    "{secretKeyRef: {name: SECRET, key: KEY}}); the value given was not echoed",
                )
            )
        if name in configuration and secret_ref(configuration[name]) is None:
            problems.append(
                (
                    f"spec.configuration.{name}",
                    f"property {name!r} is sensitive: its value is never written in the "
                    "Plugin; refer to a Secret instead: {secretKeyRef: {name: SECRET, key: "
                    "KEY}} (the value given was not echoed)",
                )
            )
    return problems


def value_for_message(spec: PluginDescriptor, name: str, value: Any) -> str:
    """How a configuration value may appear in a message: never, for a sensitive property."""
    if name in sensitive_names(spec):
        return REDACTED
    return repr(value)


def redact(spec: PluginDescriptor, configuration: dict[str, Any]) -> dict[str, Any]:
    """`configuration` with the inline values of sensitive properties replaced (references to
    Secrets are kept: they name a Secret, not its content)."""
    hidden = sensitive_names(spec)
    return {
        name: value if name not in hidden or secret_ref(value) is not None else REDACTED
        for name, value in configuration.items()
    }

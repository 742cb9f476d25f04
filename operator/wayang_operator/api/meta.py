"""Kubernetes conventions shared by all resources: object metadata and status conditions."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import ConfigDict, Field

from .base import INTEGRAL, LAX, ApiModel, DateTime, DnsLabel, DnsSubdomain

GROUP = "wayang.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


class ObjectMeta(ApiModel):
    """The parts of metadata that a manifest author writes; server-set fields pass through."""

    model_config = ConfigDict(extra="allow")

    name: DnsSubdomain
    namespace: DnsLabel | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(ApiModel):
    """A status condition as in the Kubernetes API conventions (metav1.Condition)."""

    type: Annotated[str, Field(pattern="^[A-Za-z][A-Za-z0-9]*$", max_length=316)]
    status: Annotated[ConditionStatus, LAX]
    reason: Annotated[
        str, Field(pattern="^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", max_length=1024)
    ]
    """CamelCase machine-readable reason for the last transition."""
    message: Annotated[str, Field(max_length=32768)] = ""
    """Human-readable explanation, naming the field or object at fault."""
    last_transition_time: DateTime
    observed_generation: Annotated[int, Field(ge=0), INTEGRAL] | None = None


KEYED_BY_TYPE: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}
"""A list whose items are keyed by their `type` (server-side apply merges them by it)."""

Conditions = Annotated[list[Condition], Field(max_length=16, json_schema_extra=KEYED_BY_TYPE)]

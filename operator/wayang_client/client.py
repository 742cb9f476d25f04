"""`Client.call`: one call to a plugin, with the plugin's own errorHandling applied.

For each call: the circuit breaker admits it or fails it fast; the request goes out with the
run id, the attempt number and a W3C traceparent; a retryable error (the plugin's, or a
connection refused or reset, a time-out, a 5xx without a payload) is sent again after the
backoff, up to maxAttempts; every ErrorPayload is completed with attempt, maxAttempts,
originRunId and provenanceRef; the error a plugin ends with goes to the human-review hook at or
above its humanReviewThreshold; a persistent failure is routed to fallbackNodeId, once. What
each field and suggestedAction does is documented in docs/sdk.md; the pure rules are in
policy.py and breaker.py, the wire in transport.py.

The clock, the sleep, the jitter source and the id generator are injected, so the tests assert
exact delays and states against real runtime hosts without waiting. A Client is thread-safe.
"""

from __future__ import annotations

import datetime
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from wayang_operator.api.errors import ErrorPayload, ErrorType, SuggestedAction

from . import policy
from . import trace as tracing
from .breaker import Admission, CallBreaker, Outcome
from .discovery import PluginEntry, PluginIndex
from .policy import Step
from .transport import HttpTransport, Reply, Transport, TransportError

log = logging.getLogger("wayang_client")

GRACE_SECONDS = 5.0
"""How much longer than the plugin's timeout the client waits for an answer: the host answers
a Timeout payload itself when the plugin's time is up; this only catches a host that does not."""
MESSAGE_MAX = 4096
CALLER_STAGES = frozenset({"request", "input", "properties"})
"""ValidationError stages that are the caller's doing: they say nothing of the plugin's health
and do not count for its breaker."""


class SupportsPut(Protocol):
    def put(self, item: ErrorPayload, /) -> object: ...


ReviewHook = Callable[[ErrorPayload], object] | SupportsPut
"""Where errors for a human go: a callback, or a queue (anything with `put`)."""


@dataclass(frozen=True)
class CallResult:
    """What a call ended with."""

    port: str
    """The success port's name, or the error port's."""
    plugin: PluginEntry
    """The plugin that answered: the fallback, if the call was routed to it."""
    run_id: str
    traceparent: str
    """The header the requests carried."""
    attempts: int
    """Requests sent to `plugin` (0: its breaker was open)."""
    output: Any = None
    """What the success port carried."""
    error: ErrorPayload | None = None
    """The ErrorPayload the call ended with (attempt, maxAttempts, originRunId, provenanceRef
    filled in)."""
    fallback_from: PluginEntry | None = None
    """The plugin that failed first, when the fallback answered."""
    errors: tuple[ErrorPayload, ...] = ()
    """Every error on the way, in order (the first plugin's attempts, then the fallback's)."""
    reached: bool = True
    """Whether any plugin answered at all (False: refused, unreachable, breaker open...)."""
    reviewed: tuple[ErrorPayload, ...] = ()
    """The errors handed to the human-review hook."""

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class _Tried:
    """One plugin's attempts within a call."""

    entry: PluginEntry
    attempts: int = 0
    port: str = ""
    output: Any = None
    error: ErrorPayload | None = None
    errors: list[ErrorPayload] = field(default_factory=list)
    reached: bool = False
    step: Step | None = None
    reviewed: list[ErrorPayload] = field(default_factory=list)


@dataclass(frozen=True)
class _Answer:
    port: str
    output: Any = None
    error: ErrorPayload | None = None
    reached: bool = True


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _cut(text: str, limit: int = MESSAGE_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Client:
    """Calls plugins the way their errorHandling asks.

    `index`: where plugins are found by name or id (and fallbacks resolved); `transport`: how
    requests reach them (default: HTTP straight to the endpoint); `review`: the human-review
    hook. `sleep`, `random` (a draw in [0, 1) for the jitter), `clock` (monotonic seconds, for
    the breaker) and `ids` (UUIDs for run ids) are injected for tests; trace ids are random.
    `send_attempt` sends the attempt number in the request body; a host that refuses the
    unknown field (400) is called without it from then on.
    """

    def __init__(
        self,
        index: PluginIndex | Iterable[PluginEntry] | None = None,
        *,
        transport: Transport | None = None,
        review: ReviewHook | None = None,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
        ids: Callable[[], uuid.UUID] = uuid.uuid4,
        send_attempt: bool = True,
    ) -> None:
        if index is None:
            index = PluginIndex(())
        self.index = index if isinstance(index, PluginIndex) else PluginIndex(index)
        self.transport: Transport = transport or HttpTransport()
        self.review = review
        self._sleep = sleep
        self._random = random
        self._clock = clock
        self._ids = ids
        self._send_attempt = send_attempt
        self._no_attempt: set[str] = set()
        self._breakers: dict[tuple[str, str, str], CallBreaker] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self.transport.close()

    def resolve(self, plugin: str | PluginEntry) -> PluginEntry:
        return plugin if isinstance(plugin, PluginEntry) else self.index.find(plugin)

    def breaker(self, plugin: str | PluginEntry) -> CallBreaker:
        """The plugin's call-level breaker (one per namespace, id and endpoint per Client)."""
        entry = self.resolve(plugin)
        key = (entry.namespace, entry.id, entry.endpoint)
        with self._lock:
            found = self._breakers.get(key)
            if found is None:
                found = self._breakers[key] = CallBreaker(entry.circuit_breaker, self._clock)
            return found

    # ----------------------------------------------------------------------------------------

    def call(
        self,
        plugin: str | PluginEntry,
        inputs: Mapping[str, Any],
        properties: Mapping[str, Any] | None = None,
        *,
        run_id: str | uuid.UUID | None = None,
        traceparent: str | None = None,
    ) -> CallResult:
        """Call a plugin (by name, id or entry) with its errorHandling applied; the result is
        the success port's output or the ErrorPayload, never an exception for a plugin's or
        the network's failure (only for a plugin the index does not know, `DiscoveryError`, or
        a run id that is not a UUID, `ValueError`)."""
        entry = self.resolve(plugin)
        run = str(uuid.UUID(str(run_id))) if run_id is not None else str(self._ids())
        if not tracing.available():
            header = (tracing.parse(traceparent) or tracing.start()).header
            return self._call(entry, inputs, properties, run, header)
        with tracing.client_span(f"wayang.call {entry.id}", traceparent) as span:
            result = self._call(entry, inputs, properties, run, span.header)
            span.set(
                plugin=result.plugin.id,
                run_id=run,
                attempts=result.attempts,
                port=result.port,
                fallback=result.fallback_from is not None,
            )
            if result.error is not None:
                span.failed(str(result.error.type), result.error.message)
        return result

    def _call(
        self,
        entry: PluginEntry,
        inputs: Mapping[str, Any],
        properties: Mapping[str, Any] | None,
        run: str,
        header: str,
    ) -> CallResult:
        first = self._attempts(entry, inputs, properties, run, header)
        if first.step is Step.FALLBACK:
            fallback = self._fallback(entry)
            if fallback is not None:
                # The fallback gets the same inputs; properties are the first plugin's own,
                # so the fallback runs with its configuration and defaults.
                final = self._attempts(fallback, inputs, None, run, header)
                return CallResult(
                    port=final.port,
                    plugin=final.entry,
                    run_id=run,
                    traceparent=header,
                    attempts=final.attempts,
                    output=final.output,
                    error=final.error,
                    fallback_from=entry,
                    errors=(*first.errors, *final.errors),
                    reached=first.reached or final.reached,
                    reviewed=(*first.reviewed, *final.reviewed),
                )
        return CallResult(
            port=first.port,
            plugin=entry,
            run_id=run,
            traceparent=header,
            attempts=first.attempts,
            output=first.output,
            error=first.error,
            errors=tuple(first.errors),
            reached=first.reached,
            reviewed=tuple(first.reviewed),
        )

    def _fallback(self, entry: PluginEntry) -> PluginEntry | None:
        target = entry.error_handling.fallback_node_id
        if not target:
            return None
        fallback = self.index.get(target)
        if fallback is None:
            log.warning(
                "fallback %s of %s is not in the plugin index: no fallback", target, entry.id
            )
            return None
        if fallback == entry:
            return None  # a plugin is not its own fallback
        return fallback

    def _attempts(
        self,
        entry: PluginEntry,
        inputs: Mapping[str, Any],
        properties: Mapping[str, Any] | None,
        run: str,
        header: str,
    ) -> _Tried:
        retry = entry.retry_policy
        total = policy.attempts_allowed(retry)
        tried = _Tried(entry, port=entry.error_port)
        breaker = self.breaker(entry)
        admission = breaker.admit()
        if not admission.allowed:
            tried.error = self._complete(entry, self._circuit_open(entry, admission), 0, total, run)
            tried.errors.append(tried.error)
            tried.step = Step.FALLBACK
            self._to_review(entry, tried)
            return tried
        attempt = 0
        while True:
            answer = self._send(
                entry, inputs=inputs, properties=properties, run=run, attempt=attempt, header=header
            )
            tried.attempts = attempt + 1
            tried.reached = tried.reached or answer.reached
            tried.port = answer.port
            if answer.error is None:
                breaker.record(admission, Outcome.SUCCESS)
                tried.output, tried.error = answer.output, None
                return tried
            error = self._complete(entry, answer.error, attempt, total, run)
            tried.errors.append(error)
            tried.error = error
            step = policy.next_step(error)
            if step is Step.RETRY:
                if attempt + 1 < total:
                    attempt += 1
                    self._sleep(policy.delay_seconds(retry, attempt, self._random()))
                    continue
                step = Step.FALLBACK  # retries exhausted: a persistent failure
            tried.step = step
            breaker.record(admission, Outcome.NEUTRAL if _callers(error) else Outcome.FAILURE)
            self._to_review(entry, tried)
            return tried

    def _to_review(self, entry: PluginEntry, tried: _Tried) -> None:
        error = tried.error
        if error is None or self.review is None:
            return
        if not policy.needs_review(error, entry.error_handling.human_review_threshold):
            return
        tried.reviewed.append(error)
        put = getattr(self.review, "put", None)
        if callable(put):
            put(error)
        else:
            self.review(error)  # type: ignore[operator]

    def _complete(
        self, entry: PluginEntry, error: ErrorPayload, attempt: int, total: int, run: str
    ) -> ErrorPayload:
        """attempt (0-based), maxAttempts (the attempts this call allows), originRunId and
        provenanceRef, whatever the plugin filled in."""
        return error.model_copy(
            update={
                "attempt": attempt,
                "max_attempts": total,
                "origin_run_id": run,
                "provenance_ref": policy.provenance_ref(
                    entry.namespace, entry.id, entry.version, entry.digest, run
                ),
            }
        )

    # ----------------------------------------------------------------------------------------
    # The wire

    def _send(
        self,
        entry: PluginEntry,
        *,
        inputs: Mapping[str, Any],
        properties: Mapping[str, Any] | None,
        run: str,
        attempt: int,
        header: str,
    ) -> _Answer:
        document: dict[str, Any] = {"inputs": dict(inputs), "runId": run}
        if properties:
            document["properties"] = dict(properties)
        with_attempt = self._send_attempt and entry.endpoint not in self._no_attempt
        if with_attempt:
            document["attempt"] = attempt
        timeout = entry.timeout_ms / 1000.0 + GRACE_SECONDS
        try:
            reply = self.transport.post(entry, document, {tracing.HEADER: header}, timeout)
        except TransportError as failure:
            return _Answer(entry.error_port, error=self._unreached(entry, failure), reached=False)
        if with_attempt and _refuses_attempt(reply):
            log.info("%s does not take the attempt field: calling it without", entry.endpoint)
            self._no_attempt.add(entry.endpoint)
            return self._send(
                entry, inputs=inputs, properties=properties, run=run, attempt=attempt, header=header
            )
        return self._decode(entry, reply)

    def _decode(self, entry: PluginEntry, reply: Reply) -> _Answer:
        try:
            document = json.loads(reply.body) if reply.body else None
        except ValueError:
            document = None
        if isinstance(document, dict):
            if reply.status == 200 and "output" in document and "error" not in document:
                port = str(document.get("port") or entry.success_port or "")
                return _Answer(port, output=document["output"])
            raw = document.get("error")
            if isinstance(raw, dict):
                port = str(document.get("port") or entry.error_port)
                return _Answer(port, error=self._payload(entry, raw))
        return _Answer(
            entry.error_port, error=self._no_payload(entry, reply, document), reached=False
        )

    def _payload(self, entry: PluginEntry, raw: Mapping[str, Any]) -> ErrorPayload:
        try:
            return ErrorPayload.model_validate(raw, by_alias=True)
        except ValueError as invalid:
            return self._error(
                entry,
                ErrorType.UNKNOWN_ERROR,
                f"the plugin answered with an invalid ErrorPayload: {invalid}",
                retryable=False,
                details={"payload": _cut(json.dumps(raw), 2048)},
            )

    def _no_payload(self, entry: PluginEntry, reply: Reply, document: Any) -> ErrorPayload:
        """An answer that is no plugin's: a proxy's or the API server's error, or garbage."""
        status = reply.status
        said = document.get("message") if isinstance(document, dict) else None
        text = str(said) if said else reply.body[:300].decode(errors="replace").strip()
        details: dict[str, Any] = {"status": status, "transport": "http"}
        what = f"{entry.endpoint} answered HTTP {status} without an ErrorPayload"
        message = f"{what}: {text}" if text else what
        if status >= 500 or status == 429:
            return self._error(
                entry, ErrorType.NETWORK_ERROR, message, retryable=True, details=details,
                suggested=SuggestedAction.RETRY,
            )  # fmt: skip
        if status in (401, 403):
            return self._error(
                entry, ErrorType.SECURITY_ERROR, message, retryable=False, details=details,
                suggested=SuggestedAction.ESCALATE,
            )  # fmt: skip
        return self._error(
            entry, ErrorType.NETWORK_ERROR, message, retryable=False, details=details
        )

    def _unreached(self, entry: PluginEntry, failure: TransportError) -> ErrorPayload:
        kind = ErrorType.TIMEOUT if failure.timeout else ErrorType.NETWORK_ERROR
        return self._error(
            entry,
            kind,
            failure.message,
            retryable=True,
            details={"transport": failure.reason},
            suggested=SuggestedAction.RETRY,
        )

    def _circuit_open(self, entry: PluginEntry, admission: Admission) -> ErrorPayload:
        waiting = (
            f"half-opens in {admission.retry_after_ms} ms"
            if admission.retry_after_ms
            else "a trial call is under way"
        )
        return self._error(
            entry,
            ErrorType.TOOL_ERROR,
            f"the circuit breaker of {entry.id} is open after {admission.failures} failed "
            f"calls: failing fast ({waiting})",
            retryable=True,
            details={
                "reason": "circuit open",
                "state": admission.state.value,
                "retryAfterMs": admission.retry_after_ms,
            },
            suggested=SuggestedAction.FALLBACK,
        )

    def _error(
        self,
        entry: PluginEntry,
        kind: ErrorType,
        message: str,
        *,
        retryable: bool,
        details: dict[str, Any] | None = None,
        suggested: SuggestedAction | None = None,
    ) -> ErrorPayload:
        return ErrorPayload(
            type=kind,
            message=_cut(message),
            details=details,
            retryable=retryable,
            origin_node=entry.id[:253],
            timestamp=now_rfc3339(),
            suggested_action=suggested,
        )


def _callers(error: ErrorPayload) -> bool:
    return (
        error.type == ErrorType.VALIDATION_ERROR
        and (error.details or {}).get("stage") in CALLER_STAGES
    )


def _refuses_attempt(reply: Reply) -> bool:
    """A host from before `attempt` was part of the request refuses it as an unknown field."""
    if reply.status != 400 or b"attempt" not in reply.body:
        return False
    try:
        error = json.loads(reply.body).get("error") or {}
    except (ValueError, AttributeError):
        return False
    return (error.get("details") or {}).get("stage") == "request" and "attempt" in str(
        error.get("message")
    )

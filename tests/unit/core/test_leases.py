"""Leader election decisions: who may take the Lease, judged on this replica's own clock."""

from __future__ import annotations

from wayang_operator.core.leases import LeaseRecord, Observer, Step

ME, OTHER = "replica-a", "replica-b"


def test_no_lease_is_created() -> None:
    assert Observer().step(None, ME, now=0, duration=15) is Step.CREATE


def test_our_lease_is_renewed() -> None:
    assert Observer().step(LeaseRecord(ME, "t1"), ME, now=0, duration=15) is Step.RENEW


def test_a_released_lease_is_taken_at_once() -> None:
    assert Observer().step(LeaseRecord(None, "t1"), ME, now=0, duration=15) is Step.TAKE
    assert Observer().step(LeaseRecord("", "t1"), ME, now=0, duration=15) is Step.TAKE


def test_a_live_holder_keeps_it() -> None:
    observer = Observer()
    for now, renewed in ((0, "t1"), (10, "t2"), (20, "t3"), (30, "t4")):
        assert observer.step(LeaseRecord(OTHER, renewed), ME, now=now, duration=15) is Step.WAIT


def test_a_silent_holder_loses_it_after_a_full_duration_on_our_clock() -> None:
    observer = Observer()
    record = LeaseRecord(OTHER, "t1")
    assert observer.step(record, ME, now=100, duration=15) is Step.WAIT
    assert observer.step(record, ME, now=114.9, duration=15) is Step.WAIT
    assert observer.step(record, ME, now=115, duration=15) is Step.TAKE


def test_the_holders_timestamps_are_never_compared_with_our_clock() -> None:
    """A holder whose clock runs years behind is alive as long as its renewals keep changing."""
    observer = Observer()
    assert observer.step(LeaseRecord(OTHER, "1970-01-01T00:00:00Z"), ME, 0, 15) is Step.WAIT
    assert observer.step(LeaseRecord(OTHER, "1970-01-01T00:00:05Z"), ME, 14, 15) is Step.WAIT
    assert observer.step(LeaseRecord(OTHER, "1970-01-01T00:00:05Z"), ME, 28, 15) is Step.WAIT
    assert observer.step(LeaseRecord(OTHER, "1970-01-01T00:00:05Z"), ME, 29, 15) is Step.TAKE


def test_a_new_holder_restarts_the_clock() -> None:
    observer = Observer()
    assert observer.step(LeaseRecord(OTHER, "t1"), ME, now=0, duration=15) is Step.WAIT
    assert observer.step(LeaseRecord("replica-c", "t1"), ME, now=14, duration=15) is Step.WAIT
    assert observer.step(LeaseRecord("replica-c", "t1"), ME, now=28, duration=15) is Step.WAIT

"""Backoff bounds and jitter (protocol/backoff.py)."""

import random

import pytest
from veraltheim.protocol.backoff import RECONNECT_BACKOFF, REJOIN_BACKOFF, Backoff


def test_bounds_grow_exponentially_then_cap():
    backoff = Backoff(initial_s=0.1, factor=2.0, max_s=1.0, jitter=0.5)
    highs = [backoff.bounds(t)[1] for t in range(1, 8)]
    assert highs == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])
    assert backoff.bounds(1) == pytest.approx((0.05, 0.1))


def test_huge_try_counts_stay_at_the_cap():
    assert RECONNECT_BACKOFF.bounds(10**6)[1] == RECONNECT_BACKOFF.max_s


@pytest.mark.parametrize("backoff", [RECONNECT_BACKOFF, REJOIN_BACKOFF])
def test_every_delay_is_within_its_bounds_and_jittered(backoff):
    rng = random.Random(7)
    for tries in range(1, 20):
        low, high = backoff.bounds(tries)
        delays = [backoff.delay(tries, rng) for _ in range(50)]
        assert all(low <= d <= high for d in delays)
        assert len(set(delays)) > 40  # jitter spreads clients that dropped together
        assert high <= backoff.max_s


def test_no_jitter_gives_the_exact_curve():
    backoff = Backoff(initial_s=0.5, factor=3.0, max_s=10.0, jitter=0.0)
    assert [backoff.delay(t) for t in (1, 2, 3, 4)] == pytest.approx([0.5, 1.5, 4.5, 10.0])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_s": 0, "factor": 2, "max_s": 1},
        {"initial_s": 2, "factor": 2, "max_s": 1},
        {"initial_s": 1, "factor": 0.5, "max_s": 2},
        {"initial_s": 1, "factor": 2, "max_s": 2, "jitter": 1.5},
    ],
)
def test_bad_backoff_is_refused(kwargs):
    with pytest.raises(ValueError, match="bad backoff"):
        Backoff(**kwargs)

"""Token buckets for the per-socket and per-user rate limits (sans-I/O: callers pass the time)."""

from __future__ import annotations


class TokenBucket:
    """`rate` tokens per second up to `burst`; a rate of 0 means no limit."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = now

    def _refill(self, now: float) -> None:
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.stamp = now

    def take(self, now: float, n: float = 1.0) -> bool:
        if self.rate <= 0:
            return True
        self._refill(now)
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False

    def affordable(self, now: float) -> bool:
        """Whether the bucket is out of debt (see spend)."""
        if self.rate <= 0:
            return True
        self._refill(now)
        return self.tokens >= 0

    def spend(self, now: float, n: float) -> None:
        """Take n even if it is more than there is: for a cost known only after the work (one
        answer may be larger than the whole burst), refused by `affordable` until paid off."""
        if self.rate > 0:
            self._refill(now)
            self.tokens -= n


class UserBuckets:
    """One shared bucket per user across all their sockets, dropped with their last socket."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[TokenBucket, int]] = {}

    def acquire(self, user: str, now: float) -> TokenBucket:
        bucket, count = self._buckets.get(user) or (TokenBucket(self.rate, self.burst, now), 0)
        self._buckets[user] = (bucket, count + 1)
        return bucket

    def release(self, user: str) -> None:
        entry = self._buckets.get(user)
        if entry is None:
            return
        bucket, count = entry
        if count <= 1:
            del self._buckets[user]
        else:
            self._buckets[user] = (bucket, count - 1)

    def __len__(self) -> int:
        return len(self._buckets)

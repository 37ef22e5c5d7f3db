"""Caps on open sockets: in all, per user and per client address (sans-I/O bookkeeping).

Each socket is a file descriptor plus buffers: without caps one token could open sockets until
the process runs out of descriptors and every other client is refused. The total cap leaves
room below the descriptor limit for files, worker pipes and the store.
"""

from __future__ import annotations

from collections import Counter

# Descriptors kept for everything but client sockets when max_sockets is 0 (auto).
FD_RESERVE = 256
FALLBACK_MAX_SOCKETS = 10_000  # no descriptor limit to read (Windows)


def descriptor_limit() -> int | None:
    try:
        import resource  # not on Windows
    except ImportError:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def auto_max_sockets(limit: int | None) -> int:
    """The total cap for a process allowed `limit` descriptors."""
    if limit is None:
        return FALLBACK_MAX_SOCKETS
    return max(1, limit - FD_RESERVE)


class SocketCaps:
    """`refusal(user, address)` says why one more socket is refused (None: admit it); `add`
    and `remove` track the open ones. A limit of 0 means none."""

    def __init__(self, total: int, per_user: int, per_address: int) -> None:
        self.total = total
        self.per_user = per_user
        self.per_address = per_address
        self.open = 0
        self._users: Counter[str] = Counter()
        self._addresses: Counter[str] = Counter()

    def refusal(self, user: str, address: str) -> str | None:
        if self.total and self.open >= self.total:
            return f"the service has {self.total} sockets open (max_sockets); try again later"
        if self.per_user and self._users[user] >= self.per_user:
            return f"user has {self.per_user} sockets open (max_sockets_per_user)"
        if self.per_address and self._addresses[address] >= self.per_address:
            return f"{self.per_address} sockets open from {address} (max_sockets_per_ip)"
        return None

    def add(self, user: str, address: str) -> None:
        self.open += 1
        self._users[user] += 1
        self._addresses[address] += 1

    def remove(self, user: str, address: str) -> None:
        self.open -= 1
        for counter, key in ((self._users, user), (self._addresses, address)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]

"""Topic patterns to channel classes: an exact topic ("lobby") or a prefix ("compute:*")."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from veraltheim.service.channel import Channel


class Router:
    def __init__(self) -> None:
        self._exact: dict[str, type[Channel]] = {}
        self._prefixes: list[tuple[str, type[Channel]]] = []

    def add(self, pattern: str, channel: type[Channel]) -> None:
        if pattern.endswith("*"):
            prefix = pattern[:-1]
            if "*" in prefix:
                raise ValueError(f"topic pattern {pattern!r}: '*' may only end a pattern")
            self._prefixes.append((prefix, channel))
            # Longest prefix first, so "doc:special:*" wins over "doc:*".
            self._prefixes.sort(key=lambda p: -len(p[0]))
        elif "*" in pattern:
            raise ValueError(f"topic pattern {pattern!r}: '*' may only end a pattern")
        else:
            self._exact[pattern] = channel

    def match(self, topic: str) -> type[Channel] | None:
        found = self._exact.get(topic)
        if found is not None:
            return found
        for prefix, channel in self._prefixes:
            if topic.startswith(prefix):
                return channel
        return None

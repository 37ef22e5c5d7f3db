"""Counters and gauges rendered as Prometheus text (version 0.0.4); no client library needed
for this handful of series."""

from __future__ import annotations

import math
from collections.abc import Callable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "veraltheim_"

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _series(name: str, labels: Labels) -> str:
    if not labels:
        return name
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return f"{name}{{{inner}}}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class Counter:
    """A monotonically increasing count, optionally split by labels."""

    kind = "counter"

    def __init__(self, name: str, help_text: str) -> None:
        self.name, self.help = name, help_text
        self.values: dict[Labels, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items())) if labels else ()
        self.values[key] = self.values.get(key, 0.0) + amount

    def samples(self) -> list[tuple[Labels, float]]:
        return list(self.values.items()) or [((), 0.0)]


class Gauge:
    """A value read when /metrics is scraped."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.name, self.help, self.read = name, help_text, read

    def samples(self) -> list[tuple[Labels, float]]:
        return [((), float(self.read()))]


class Metrics:
    """The service's registry; components add their own series with counter()/gauge()."""

    def __init__(self) -> None:
        self._series: dict[str, Counter | Gauge] = {}

    def counter(self, name: str, help_text: str) -> Counter:
        return self._add(Counter(PREFIX + name, help_text))

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> Gauge:
        return self._add(Gauge(PREFIX + name, help_text, read))

    def _add(self, series):
        existing = self._series.get(series.name)
        if existing is not None:
            if type(existing) is not type(series):
                raise ValueError(f"metric {series.name} already registered as {existing.kind}")
            return existing
        self._series[series.name] = series
        return series

    def render(self) -> str:
        lines: list[str] = []
        for s in self._series.values():
            lines.append(f"# HELP {s.name} {s.help}")
            lines.append(f"# TYPE {s.name} {s.kind}")
            name = f"{s.name}_total" if s.kind == "counter" else s.name
            lines.extend(f"{_series(name, k)} {_number(v)}" for k, v in s.samples())
        return "\n".join(lines) + "\n"

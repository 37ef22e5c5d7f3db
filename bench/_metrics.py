"""A service's /metrics, read the way Prometheus would (the benchmarks' view of its internals)."""

from __future__ import annotations

import urllib.request


def scrape(http_url: str) -> dict[str, float]:
    """The service's /metrics series (label sets kept in the key)."""
    with urllib.request.urlopen(http_url + "/metrics", timeout=30) as resp:
        text = resp.read().decode()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }

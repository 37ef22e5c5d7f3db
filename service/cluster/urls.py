"""The cluster URLs of the configuration: which schemes each setting takes, checked once."""

from __future__ import annotations

import os
import secrets
import socket
from typing import Any
from urllib.parse import urlsplit

REDIS_SCHEMES = ("redis", "rediss", "unix")
DASK_SCHEME = "dask"
MAX_NODE_NAME_CHARS = 200


def _check_url(key: str, url: str, schemes: tuple[str, ...]) -> None:
    if not url:
        return
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        raise ValueError(
            f"bad value for 'cluster.{key}': expected {' or '.join(s + '://' for s in schemes)}"
            f" URL, got {url!r}"
        )
    try:
        parts.port  # noqa: B018 (parsing it is the check)
    except ValueError:
        raise ValueError(f"bad value for 'cluster.{key}': bad port in {url!r}") from None
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError(f"bad value for 'cluster.{key}': no host in {url!r}")


def check_cluster_config(cluster: Any) -> None:
    """Raise ValueError naming the key when a cluster URL or the node name is unusable."""
    _check_url("pubsub_url", cluster.pubsub_url, REDIS_SCHEMES)
    _check_url("store_url", cluster.store_url, REDIS_SCHEMES)
    _check_url("compute_url", cluster.compute_url, (DASK_SCHEME,))
    if cluster.store_url and not cluster.pubsub_url:
        # a document's updates reach the other nodes' clients as broadcasts
        raise ValueError("'cluster.store_url' needs 'cluster.pubsub_url' (--pubsub) as well")
    if len(cluster.node_name) > MAX_NODE_NAME_CHARS:
        raise ValueError(f"bad value for 'cluster.node_name': over {MAX_NODE_NAME_CHARS} chars")
    if cluster.down_after_s < 2 * cluster.heartbeat_s:
        # as Phoenix.Tracker's down_period: one late heartbeat must not mark a node down
        raise ValueError("'cluster.down_after_s' must be at least twice 'cluster.heartbeat_s'")


def dask_address(url: str) -> str:
    """dask://HOST:PORT -> tcp://HOST:PORT, the address distributed.Client takes."""
    parts = urlsplit(url)
    return f"tcp://{parts.netloc}"


def node_name(configured: str) -> str:
    """This node's name: the configured one, else host:pid:random (unique per incarnation, so a
    restarted node is a new node and the others drop the old one's entries)."""
    return configured or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"

"""Service configuration: one dataclass per area, loaded from TOML < environment < flags.

Every setting is declared once here with its default and a one-line description; the CLI flags,
environment variable names and the README table are derived from these declarations.

- TOML file: top-level keys for `ServiceConfig`; tables `[compute]`, `[docs]`, `[cluster]` for
  the nested.
- Environment: `VERALTHEIM_<KEY>` (e.g. `VERALTHEIM_PORT`), `VERALTHEIM_COMPUTE_<KEY>`,
  `VERALTHEIM_DOCS_<KEY>`. Variables with other names are left alone (the client shares the prefix).
- Overrides (flags): `{"port": 0, "compute.workers": 2}` or `{"compute": {"workers": 2}}`;
  a value of None means "not given".
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs
from veraltheim.protocol.constants import APP_NAME, DEFAULT_PORT, IDLE_TIMEOUT_S

ENV_PREFIX = "VERALTHEIM_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MIB = 1024 * 1024


class ConfigError(ValueError):
    """A bad configuration: the message names the key and where the value came from."""


def doc(
    text: str,
    *,
    min: float | None = None,
    max: float | None = None,
    choices: tuple[str, ...] | None = None,
    shown: str | None = None,
) -> dict[str, Any]:
    """Field metadata: the description and the bounds that validation and the docs read.

    `shown` describes a default that depends on the machine (the docs print it instead).
    """
    return {"doc": text, "min": min, "max": max, "choices": choices, "shown": shown}


def default_data_dir() -> Path:
    return platformdirs.user_data_path(APP_NAME) / "service"


def default_workers() -> int:
    return os.cpu_count() or 1


@dataclass
class ComputeConfig:
    """The compute pool (`compute:*` topics)."""

    workers: int = field(
        default_factory=default_workers,
        metadata=doc("worker processes running kernels", min=1, shown="number of CPUs"),
    )
    queue_limit: int = field(
        default=64, metadata=doc("jobs waiting beyond the running ones before refusing", min=0)
    )
    job_deadline_s: float = field(
        default=30.0, metadata=doc("wall-clock limit of one job, seconds", min=0.001)
    )
    memory_limit_mib: int = field(
        default=256, metadata=doc("wasm linear memory cap per job, MiB", min=1)
    )
    max_tiles: int = field(
        default=0, metadata=doc("most workers one tiled job is split across; 0: all", min=0)
    )
    max_probe_bytes: int = field(
        default=1 * MIB, metadata=doc("largest link probe echoed back (bandwidth test)", min=1)
    )
    max_job_id_chars: int = field(
        default=128, metadata=doc("longest job id a request may carry", min=1)
    )


@dataclass
class DocsConfig:
    """Shared documents (`doc:*` topics)."""

    max_update_bytes: int = field(
        default=1 * MIB, metadata=doc("largest Yjs message a client may push", min=1)
    )
    updates_per_s: float = field(
        default=50.0, metadata=doc("Yjs messages per second per client and document", min=0)
    )
    max_docs_per_user: int = field(
        default=100, metadata=doc("documents one user may have open at once", min=1)
    )
    idle_unload_s: float = field(
        default=300.0, metadata=doc("unload a document nobody has joined for this long", min=0)
    )
    compact_every: int = field(
        default=1000, metadata=doc("snapshot a document after this many stored updates", min=1)
    )
    max_loaded_docs: int = field(
        default=1000,
        metadata=doc(
            "documents in memory at once; idle ones are unloaded early to make room", min=1
        ),
    )
    max_awareness_states: int = field(
        default=16,
        metadata=doc("awareness client ids per message and per member", min=1),
    )
    max_awareness_state_bytes: int = field(
        default=16 * 1024, metadata=doc("largest awareness state (JSON) of one client", min=2)
    )
    sync_bytes_per_s: float = field(
        default=8.0 * MIB,
        metadata=doc("sync step 2 bytes per second per member (one answer may exceed it)", min=0),
    )


@dataclass
class ClusterConfig:
    """More than one node: Redis for pub/sub, presence and documents; Dask for compute."""

    pubsub_url: str = field(
        default="",
        metadata=doc(
            "redis://HOST:PORT/DB: broadcasts and presence across nodes; empty: this node"
        ),
    )
    store_url: str = field(
        default="",
        metadata=doc("redis://HOST:PORT/DB: document logs in Redis; empty: SQLite in data_dir"),
    )
    compute_url: str = field(
        default="",
        metadata=doc("dask://SCHEDULER:PORT: compute jobs on a Dask cluster; empty: local pool"),
    )
    node_name: str = field(
        default="", metadata=doc("this node's name among the others; empty: host:pid:random")
    )
    heartbeat_s: float = field(
        default=1.0, metadata=doc("a node says it is alive this often over Redis", min=0.01)
    )
    down_after_s: float = field(
        default=5.0,
        metadata=doc("a node silent this long is down: its presence entries leave", min=0.02),
    )


@dataclass
class ServiceConfig:
    """Every setting of `veraltheim-service`, with its default."""

    host: str = field(default="127.0.0.1", metadata=doc("interface to listen on; 0.0.0.0: all"))
    port: int = field(
        default=DEFAULT_PORT, metadata=doc("TCP port; 0 lets the OS pick one", min=0, max=65535)
    )
    data_dir: Path = field(
        default_factory=default_data_dir,
        metadata=doc(
            "documents, secret key, pid file, log",
            shown="platform user data dir + /service, e.g. ~/.local/share/veraltheim/service",
        ),
    )
    secret_key: str | None = field(
        default=None,
        metadata=doc("token signing secret; default: generated once into <data_dir>/secret_key"),
    )
    auth: bool = field(
        default=True, metadata=doc("require a signed token to connect; false: development only")
    )
    certfile: Path | None = field(
        default=None, metadata=doc("TLS certificate chain (PEM); with keyfile: wss://")
    )
    keyfile: Path | None = field(default=None, metadata=doc("TLS private key (PEM)"))
    allowed_origins: tuple[str, ...] = field(
        default=(),
        metadata=doc("browser Origins allowed, e.g. https://app.example; empty: any"),
    )
    max_frame_bytes: int = field(
        default=16 * MIB, metadata=doc("largest WebSocket message accepted", min=1)
    )
    max_text_frame_bytes: int = field(
        default=1 * MIB,
        metadata=doc(
            "largest text (JSON) message accepted; bulk data goes in binary frames", min=1
        ),
    )
    max_sockets: int = field(
        default=0,
        metadata=doc(
            "open sockets in all; 0: the descriptor limit less 256 kept for files and workers",
            min=0,
        ),
    )
    max_sockets_per_user: int = field(
        default=100, metadata=doc("open sockets of one user (token); 0: no limit", min=0)
    )
    max_presence_meta_bytes: int = field(
        default=1024,
        metadata=doc("largest lobby presence meta (JSON); every member receives it", min=2),
    )
    max_sockets_per_ip: int = field(
        default=2000,
        metadata=doc("open sockets from one client address; 0: no limit (behind a proxy)", min=0),
    )
    max_channels_per_socket: int = field(
        default=100, metadata=doc("topics one socket may join", min=1)
    )
    socket_rate: float = field(
        default=100.0, metadata=doc("messages per second per socket (token bucket)", min=0)
    )
    socket_burst: int = field(default=200, metadata=doc("bucket size per socket", min=1))
    user_rate: float = field(
        default=200.0, metadata=doc("messages per second per user, all sockets", min=0)
    )
    user_burst: int = field(default=400, metadata=doc("bucket size per user", min=1))
    socket_bytes_per_s: float = field(
        default=16.0 * MIB,
        metadata=doc(
            "frame bytes per second per socket; one frame may exceed it; 0: no limit", min=0
        ),
    )
    user_bytes_per_s: float = field(
        default=32.0 * MIB,
        metadata=doc("frame bytes per second per user, all sockets; 0: no limit", min=0),
    )
    flood_close_after: int = field(
        default=50, metadata=doc("over-limit messages in a row before the socket is closed", min=1)
    )
    send_buffer_bytes: int = field(
        default=32 * MIB,
        metadata=doc("unsent bytes queued for one socket before it is evicted as too slow", min=1),
    )
    idle_timeout_s: float = field(
        default=float(IDLE_TIMEOUT_S), metadata=doc("close a socket silent this long", min=0.001)
    )
    shutdown_grace_s: float = field(
        default=10.0, metadata=doc("on stop, wait this long for in-flight work", min=0)
    )
    log_file: Path | None = field(
        default=None,
        metadata=doc("log file; default: stderr for run, <data_dir>/service.log for start"),
    )
    pidfile: Path | None = field(
        default=None, metadata=doc("pid file of start/stop/status; default <data_dir>/service.pid")
    )
    log_level: str = field(
        default="INFO", metadata=doc("DEBUG, INFO, WARNING, ERROR or CRITICAL", choices=LOG_LEVELS)
    )
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    docs: DocsConfig = field(default_factory=DocsConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    @property
    def tls(self) -> bool:
        return self.certfile is not None

    @property
    def pidfile_path(self) -> Path:
        return self.pidfile or self.data_dir / "service.pid"

    @property
    def daemon_log_path(self) -> Path:
        return self.log_file or self.data_dir / "service.log"


# Nested sections: TOML table / env infix / override prefix -> dataclass.
SECTIONS: dict[str, type] = {
    "compute": ComputeConfig,
    "docs": DocsConfig,
    "cluster": ClusterConfig,
}


@dataclass(frozen=True)
class Setting:
    """One leaf setting, as documentation and the CLI see it."""

    section: str | None
    name: str
    type: Any
    default: Any
    doc: str
    shown: str | None = None

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}" if self.section else self.name

    @property
    def env(self) -> str:
        infix = f"{self.section.upper()}_" if self.section else ""
        return f"{ENV_PREFIX}{infix}{self.name.upper()}"


def _leaf_fields(cls: type) -> Iterator[tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name not in SECTIONS:
            yield f, hints[f.name]


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


def settings() -> list[Setting]:
    """Every leaf setting in declaration order (top level first, then each section)."""
    out = []
    for section, cls in [(None, ServiceConfig), *SECTIONS.items()]:
        out += [
            Setting(
                section,
                f.name,
                t,
                _default_of(f),
                f.metadata.get("doc", ""),
                f.metadata.get("shown"),
            )
            for f, t in _leaf_fields(cls)
        ]
    return out


# --- conversion -------------------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _convert(value: Any, kind: Any, from_text: bool) -> Any:
    """Convert one value to the declared type; raise ValueError with what was expected."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(kind) if a is not type(None)]
        if value is None or (from_text and value == ""):
            return None
        return _convert(value, inner[0], from_text)
    if origin is tuple:
        if from_text and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ValueError("expected a list of strings")
        return tuple(value)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if from_text and isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError("expected true or false")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if from_text and isinstance(value, str):
            try:
                return int(value.strip().replace("_", ""))
            except ValueError:
                pass
        raise ValueError("expected an integer")
    if kind is float:
        number: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif from_text and isinstance(value, str):
            with contextlib.suppress(ValueError):
                number = float(value.strip())
        # NaN would slip through every min/max check (its comparisons are all false).
        if number is None or math.isnan(number):
            raise ValueError("expected a number")
        return number
    if kind is Path:
        if isinstance(value, Path):
            return value.expanduser()
        if isinstance(value, str) and value:
            return Path(value).expanduser()
        raise ValueError("expected a path")
    if kind is str:
        if isinstance(value, str):
            return value
        raise ValueError("expected a string")
    raise TypeError(f"unsupported setting type {kind!r}")


def _check(value: Any, f: dataclasses.Field) -> None:
    lo, hi, choices = f.metadata.get("min"), f.metadata.get("max"), f.metadata.get("choices")
    if choices is not None and value not in choices:
        raise ValueError(f"expected one of {', '.join(choices)}")
    if lo is not None and value < lo:
        raise ValueError(f"must be at least {lo}")
    if hi is not None and value > hi:
        raise ValueError(f"must be at most {hi}")


def _fill(target: Any, values: Mapping[str, Any], section: str | None, source: str, text: bool):
    """Set `values` on the dataclass `target`, converting and checking each one."""
    fields = {f.name: (f, t) for f, t in _leaf_fields(type(target))}
    for name, raw in values.items():
        key = f"{section}.{name}" if section else name
        if name not in fields:
            raise ConfigError(f"unknown setting {key!r} ({source})")
        f, kind = fields[name]
        try:
            value = _convert(raw, kind, text)
            if name == "log_level" and isinstance(value, str):
                value = value.upper()
            if value is not None:
                _check(value, f)
        except ValueError as e:
            raise ConfigError(f"bad value for {key!r} ({source}): {e}, got {raw!r}") from None
        setattr(target, name, value)


def _split_sections(values: Mapping[str, Any], source: str) -> Iterator[tuple[str | None, dict]]:
    """Yield (section, {name: value}) from a mapping with tables or dotted keys."""
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for key, value in values.items():
        if value is None:
            continue
        head, dot, rest = key.partition(".")
        if dot and head in SECTIONS:
            nested[head][rest] = value
        elif key in SECTIONS:
            if not isinstance(value, Mapping):
                raise ConfigError(f"bad value for {key!r} ({source}): expected a table")
            nested[key].update({k: v for k, v in value.items() if v is not None})
        else:
            top[key] = value
    yield None, top
    yield from nested.items()


def _env_values(env: Mapping[str, str]) -> list[tuple[Setting, str]]:
    """The environment variables that name a setting, with their text."""
    return [(s, env[s.env]) for s in settings() if s.env in env]


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None


def load_config(
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    file: Path | None = None,
) -> ServiceConfig:
    """Defaults < TOML `file` < `env` (os.environ if None) < `overrides` (flags)."""
    config = ServiceConfig()
    env = os.environ if env is None else env

    def apply(values: Mapping[str, Any], source: str, text: bool) -> None:
        for section, vals in _split_sections(values, source):
            target = getattr(config, section) if section else config
            _fill(target, vals, section, source, text)

    if file is not None:
        apply(read_config_file(Path(file)), f"file {file}", text=False)
    for s, text in _env_values(env):
        target = getattr(config, s.section) if s.section else config
        _fill(target, {s.name: text}, s.section, f"env {s.env}", text=True)
    apply(overrides or {}, "command line", text=True)
    _check_consistency(config)
    return config


def _check_consistency(config: ServiceConfig) -> None:
    if (config.certfile is None) != (config.keyfile is None):
        raise ConfigError("certfile and keyfile must be given together (TLS needs both)")
    if config.secret_key is not None and not config.secret_key.strip():
        raise ConfigError("bad value for 'secret_key': empty")
    from veraltheim.service.cluster.urls import check_cluster_config

    try:
        check_cluster_config(config.cluster)
    except ValueError as e:
        raise ConfigError(str(e)) from None

"""Run one Service in the foreground until SIGTERM/SIGINT, then stop it gracefully."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import gc
import ipaddress
import logging
import signal
import sys
from collections.abc import Callable
from typing import TextIO

from veraltheim.protocol.constants import SOCKET_PATH
from veraltheim.service.config import ServiceConfig
from veraltheim.service.secret import load_or_create_secret
from veraltheim.service.tls import server_ssl_context

log = logging.getLogger("veraltheim.service")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
AUTH_OFF_WARNING = (
    "AUTH IS OFF (--no-auth): anyone who can reach %s:%s can connect as any user. "
    "Use this for local development only."
)


def setup_logging(config: ServiceConfig, stream: TextIO | None = None) -> None:
    """Log to config.log_file if set, else to `stream` (stderr)."""
    if config.log_file is not None and stream is None:
        config.log_file.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(config.log_file)
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(config.log_level)


def prepare(config: ServiceConfig) -> ServiceConfig:
    """Resolve what must be right before serving: the data dir, the TLS files, the secret.

    Raises SecretError / TLSConfigError with a one-line message, before any fork.
    """
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    server_ssl_context(config)  # fails here, naming the file, rather than after a fork
    return dataclasses.replace(config, secret_key=load_or_create_secret(config))


def listening_url(config: ServiceConfig, host: str, port: int) -> str:
    scheme = "wss" if config.tls else "ws"
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass
    return f"{scheme}://{host}:{port}{SOCKET_PATH}"


async def serve(config: ServiceConfig, announce: Callable[[str], None]) -> None:
    """Start the service, announce its URL, and stop gracefully on SIGTERM or SIGINT."""
    from veraltheim.service.app import (
        Service,  # the service core; imported late to keep the CLI light
    )

    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    log.debug("event loop: %s.%s", type(loop).__module__, type(loop).__name__)
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop_requested.set)
    service = Service(config)
    try:
        host, port = await service.start()
        url = listening_url(config, host, port)
        if not config.auth:  # after start: with --port 0 only now is the port known
            log.warning(AUTH_OFF_WARNING, host, port)
        log.info("listening on %s", url)
        announce(url)
        await stop_requested.wait()
        log.info("stopping: closing sockets, waiting up to %g s", config.shutdown_grace_s)
    finally:
        await service.stop(config.shutdown_grace_s)
        for sig in signals:
            loop.remove_signal_handler(sig)
    log.info("stopped")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (not on Windows): its transports read and write in C, so a
    broadcast costs little more than one send() per socket; asyncio's own loop elsewhere."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def raise_fd_limit() -> None:
    """Every socket is a descriptor: take the hard limit, not the soft one (often 1024)."""
    try:
        import resource  # not on Windows
    except ImportError:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):  # macOS refuses an unlimited hard value
            log.info("descriptor limit stays %d", soft)
            return
    log.info("descriptor limit %d: at most about that many sockets", hard)


# A broadcast allocates a few short-lived objects per socket. At CPython's default young-generation
# threshold (700) a fan-out to 19,000 sockets runs dozens of collections, and the older ones walk
# every socket's objects: measured, 500 ms of service CPU per broadcast instead of about 300.
# Reference counting frees those objects anyway; the collector is only for cycles.
GC_THRESHOLDS = (100_000, 50, 1000)


def run_blocking(config: ServiceConfig, announce: Callable[[str], None]) -> None:
    raise_fd_limit()
    gc.set_threshold(*GC_THRESHOLDS)
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(serve(config, announce))


def error_message(error: BaseException, config: ServiceConfig) -> str:
    """One line for stderr (or the daemon's pipe) about why the service did not run."""
    if isinstance(error, OSError) and error.errno == errno.EADDRINUSE:
        return f"cannot listen on {config.host}:{config.port}: address already in use"
    if isinstance(error, OSError) and error.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {config.host}:{config.port}: address not available"
    text = " ".join(str(error).split())
    return text or type(error).__name__

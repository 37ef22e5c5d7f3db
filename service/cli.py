"""`veraltheim-service`: run, start, stop, status, token issue, cert."""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from veraltheim.protocol.constants import READY_LINE_PREFIX
from veraltheim.service import daemon
from veraltheim.service.auth import GRANTS as TOKEN_GRANTS
from veraltheim.service.config import LOG_LEVELS, ConfigError, ServiceConfig, load_config
from veraltheim.service.secret import SecretError
from veraltheim.service.tls import (
    DEFAULT_DEV_HOSTS,
    DEV_CERT_NAME,
    DEV_KEY_NAME,
    TLSConfigError,
    client_ssl_context,
    make_dev_cert,
)

PROG = "veraltheim-service"
CONFIG_ENV = "VERALTHEIM_CONFIG"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_STOPPED, EXIT_DEAD = 3, 1  # LSB status codes: stopped, dead with a stale pidfile
HEALTH_TIMEOUT_S = 5.0


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, metavar="FILE", help=f"TOML file (or ${CONFIG_ENV})")
    common.add_argument("--data-dir", type=Path, metavar="DIR", help="data directory")

    daemon_files = argparse.ArgumentParser(add_help=False)
    daemon_files.add_argument("--pidfile", type=Path, metavar="FILE", help="pid file")

    server = argparse.ArgumentParser(add_help=False)
    server.add_argument("--host", help="interface to listen on")
    server.add_argument("--port", type=int, help="TCP port (0: any free port)")
    server.add_argument(
        "--no-auth",
        action="store_true",
        help="accept connections without a token (local development only)",
    )
    server.add_argument("--certfile", type=Path, metavar="FILE", help="TLS certificate (PEM)")
    server.add_argument("--keyfile", type=Path, metavar="FILE", help="TLS private key (PEM)")
    server.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, help="log level")
    server.add_argument("--log-file", type=Path, metavar="FILE", help="log file")
    server.add_argument(
        "--pubsub", metavar="URL", help="redis://HOST:PORT/DB: broadcasts and presence across nodes"
    )
    server.add_argument("--store", metavar="URL", help="redis://HOST:PORT/DB: documents in Redis")
    server.add_argument(
        "--compute", metavar="URL", help="dask://SCHEDULER:PORT: compute on a Dask cluster"
    )
    server.add_argument("--node-name", metavar="NAME", help="this node's name in a cluster")

    parser = argparse.ArgumentParser(
        prog=PROG, description="The Veraltheim service: Phoenix Channels over WebSocket."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser(
        "run", parents=[common, server], help="run in the foreground (systemd, launchd, a terminal)"
    )
    sub.add_parser(
        "start", parents=[common, server, daemon_files], help="start in the background (daemon)"
    )
    sub.add_parser("stop", parents=[common, daemon_files], help="stop the background service")
    sub.add_parser(
        "status", parents=[common, daemon_files], help="is it running? exit 0 running, 3 stopped"
    )

    show = sub.add_parser(
        "config", parents=[common, server, daemon_files], help="print the effective configuration"
    )
    show.add_argument(
        "--example", action="store_true", help="print the example file (every key, commented)"
    )

    token = sub.add_parser("token", help="signed connection tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    issue = token_sub.add_parser("issue", parents=[common], help="print a token for a user")
    issue.add_argument("--user", required=True, help="user id the token names")
    issue.add_argument("--ttl", type=float, default=86400.0, help="seconds valid (default 86400)")
    issue.add_argument(
        "--read-only", action="store_true", help="add the claim read_only: true (documents)"
    )
    issue.add_argument(
        "--grant",
        action="append",
        choices=TOKEN_GRANTS,
        default=[],
        help="add to the claim grants (repeatable); kernels: may install and remove kernels",
    )

    cert = sub.add_parser("cert", help="write a self-signed development certificate and key")
    cert.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    cert.add_argument(
        "--host",
        dest="hosts",
        action="append",
        metavar="NAME",
        help=f"DNS name or IP, repeatable (default {' '.join(DEFAULT_DEV_HOSTS)})",
    )
    cert.add_argument("--days", type=int, default=90, help="days valid (default 90)")
    cert.add_argument("--force", action="store_true", help="overwrite an existing cert.pem/key.pem")
    return parser


def config_from_args(args: argparse.Namespace) -> ServiceConfig:
    overrides: dict[str, Any] = {
        "data_dir": args.data_dir,
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
        "auth": False if getattr(args, "no_auth", False) else None,
        "certfile": getattr(args, "certfile", None),
        "keyfile": getattr(args, "keyfile", None),
        "log_level": getattr(args, "log_level", None),
        "log_file": getattr(args, "log_file", None),
        "pidfile": getattr(args, "pidfile", None),
        "cluster.pubsub_url": getattr(args, "pubsub", None),
        "cluster.store_url": getattr(args, "store", None),
        "cluster.compute_url": getattr(args, "compute", None),
        "cluster.node_name": getattr(args, "node_name", None),
    }
    file = args.config or (Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None)
    config = load_config(overrides, os.environ, file)
    # Relative paths mean relative to where the command ran, also after a daemon's chdir("/").
    absolute = {
        name: value.expanduser().absolute()
        for name in ("data_dir", "certfile", "keyfile", "log_file", "pidfile")
        if (value := getattr(config, name)) is not None
    }
    return dataclasses.replace(config, **absolute)


def cmd_run(config: ServiceConfig) -> int:
    from veraltheim.service import runner

    runner.setup_logging(config)
    config = runner.prepare(config)

    def announce(url: str) -> None:
        print(READY_LINE_PREFIX + url, flush=True)

    try:
        runner.run_blocking(config, announce)
    except KeyboardInterrupt:
        pass
    except Exception as e:
        raise CliError(runner.error_message(e, config)) from e
    return EXIT_OK


def cmd_start(config: ServiceConfig) -> int:
    from veraltheim.service import runner

    config = runner.prepare(dataclasses.replace(config, log_file=config.daemon_log_path))

    def run(announce) -> None:
        runner.setup_logging(config)
        runner.run_blocking(config, announce)

    pid, url = daemon.start(config, run)
    print(READY_LINE_PREFIX + url)
    print(f"started (pid {pid}, log {config.daemon_log_path})", flush=True)
    return EXIT_OK


def cmd_stop(config: ServiceConfig) -> int:
    pid = daemon.stop(config)
    print(f"stopped (pid {pid})")
    return EXIT_OK


def cmd_status(config: ServiceConfig) -> int:
    pidfile = config.pidfile_path
    stale = daemon.read_pid(pidfile)
    pid = daemon.running_pid(pidfile)
    if pid is None:
        if stale is not None:
            print(f"stopped (pid {stale} in {pidfile} is gone; removed the stale pidfile)")
            return EXIT_DEAD
        print("stopped")
        return EXIT_STOPPED
    url = _recorded_url(pidfile)
    print(f"running (pid {pid}){' ' + url if url else ''}")
    if url:
        try:
            health = fetch_health(url, config)
        except (OSError, ValueError) as e:
            print(f"healthz: unreachable: {e}")
        else:
            print("healthz: " + " ".join(f"{k}={v}" for k, v in health.items()))
    return EXIT_OK


def _recorded_url(pidfile: Path) -> str | None:
    try:
        return daemon.url_file(pidfile).read_text().strip() or None
    except OSError:
        return None


def fetch_health(ws_url: str, config: ServiceConfig) -> dict[str, Any]:
    """GET /healthz of the service whose WebSocket URL is ws_url."""
    scheme, rest = ws_url.split("://", 1)
    authority = rest.split("/", 1)[0]
    host, _, port = authority.rpartition(":")
    if host in ("0.0.0.0", "[::]"):
        host = "127.0.0.1"
    url = f"{'https' if scheme == 'wss' else 'http'}://{host}:{port}/healthz"
    context: ssl.SSLContext | None = None
    if scheme == "wss":
        # Trust our own certificate (a development one is self-signed); the host may be an IP.
        context = client_ssl_context(config.certfile)
        context.check_hostname = False
        if config.certfile is None:
            # The daemon got its certificate by flag, which status is not given: the URL is the
            # one our own daemon recorded, and only its public health figures are read.
            context.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(url, timeout=HEALTH_TIMEOUT_S, context=context) as resp:
        return json.loads(resp.read())


def cmd_config(config: ServiceConfig, args: argparse.Namespace) -> int:
    from veraltheim.service.config_doc import render_effective, render_example

    print(render_example() if args.example else render_effective(config), end="")
    return EXIT_OK


def cmd_token(config: ServiceConfig, args: argparse.Namespace) -> int:
    from veraltheim.service.auth import issue_token
    from veraltheim.service.secret import load_or_create_secret

    claims: dict[str, Any] = {"read_only": True} if args.read_only else {}
    if args.grant:
        claims["grants"] = sorted(set(args.grant))
    try:
        token = issue_token(load_or_create_secret(config), args.user, args.ttl, claims or None)
    except ValueError as e:
        raise CliError(str(e), EXIT_USAGE) from None
    print(token)
    return EXIT_OK


def cmd_cert(args: argparse.Namespace) -> int:
    if args.days < 1:
        raise CliError("--days must be at least 1", EXIT_USAGE)
    existing = [p for p in (args.out / DEV_CERT_NAME, args.out / DEV_KEY_NAME) if p.exists()]
    if existing and not args.force:
        # A key may be one a running service uses: never replaced by surprise.
        raise CliError(f"{existing[0]} exists; use --force to replace it, or another --out")
    cert, key = make_dev_cert(args.out, tuple(args.hosts or DEFAULT_DEV_HOSTS), args.days)
    print(f"certificate: {cert}")
    print(f"key:         {key}")
    print(f"use: {PROG} run --certfile {cert} --keyfile {key}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    # A frozen (PyInstaller) service re-enters here in each spawned compute worker; no-op otherwise.
    multiprocessing.freeze_support()
    args = build_parser().parse_args(argv)
    try:
        if args.command == "cert":
            return cmd_cert(args)
        config = config_from_args(args)
        if args.command == "run":
            return cmd_run(config)
        if args.command == "start":
            return cmd_start(config)
        if args.command == "stop":
            return cmd_stop(config)
        if args.command == "status":
            return cmd_status(config)
        if args.command == "config":
            return cmd_config(config, args)
        return cmd_token(config, args)
    except ConfigError as e:
        return _fail(str(e), EXIT_USAGE)
    except (SecretError, TLSConfigError, daemon.DaemonError) as e:
        return _fail(str(e), EXIT_FAILED)
    except CliError as e:
        return _fail(str(e), e.code)
    except OSError as e:
        return _fail(f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}", EXIT_FAILED)


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())

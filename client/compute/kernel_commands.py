"""`veraltheim-kernel` commands for users' own kernels: new, build, test, add, remove, fetch,
list --user. Local by default; `--service URL --token T` does add/remove/list on the service.

    veraltheim-kernel new NAME --lang c|rust DIR
    veraltheim-kernel build DIR [--toolchain auto|clang|zig|rustc]
    veraltheim-kernel test DIR
    veraltheim-kernel add MODULE.wasm --spec SPEC.toml [--service URL --token T]
    veraltheim-kernel remove NAME [--service URL --token T]
    veraltheim-kernel fetch NAME --service URL --token T
    veraltheim-kernel list --user [--json] [--service URL --token T]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import getpass
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from veraltheim.client.compute.remote import RemoteCompute, open_socket
from veraltheim.client.net.state import ConnectionState
from veraltheim.protocol.constants import COMPUTE_TOPIC
from veraltheim.wasm import KernelError, sdk
from veraltheim.wasm.manifest import load_manifest
from veraltheim.wasm.user_kernels import (
    MAX_MODULE_BYTES,
    InstallRefused,
    KernelPackage,
    UserKernelStore,
    check_kernel,
    install,
    load_spec_file,
    package_from_wire,
)

COMMANDS = ("new", "build", "test", "add", "remove", "fetch")


def add_service_arguments(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument("--service", metavar="URL", required=required, help="ws[s]://HOST:PORT")
    parser.add_argument("--token", help="access token for --service")


def add_parsers(sub: Any) -> None:
    new = sub.add_parser("new", help="make a starter kernel project")
    new.add_argument("name", metavar="NAME", help="kernel name, e.g. user.invert")
    new.add_argument("--lang", choices=sdk.LANGS, default="c", help="source language")
    new.add_argument("dir", metavar="DIR", type=Path, help="project directory (new or empty)")
    build = sub.add_parser("build", help="build a kernel project to its .wasm")
    build.add_argument("dir", metavar="DIR", type=Path)
    build.add_argument("--toolchain", choices=sdk.TOOLCHAINS, default="auto")
    test = sub.add_parser("test", help="check a built project and run its examples")
    test.add_argument("dir", metavar="DIR", type=Path)
    add = sub.add_parser("add", help="check and install a kernel (here, or on --service)")
    add.add_argument("module", metavar="MODULE.wasm", type=Path)
    add.add_argument("--spec", metavar="SPEC.toml", type=Path, required=True)
    add_service_arguments(add)
    remove = sub.add_parser("remove", help="uninstall a user kernel (here, or on --service)")
    remove.add_argument("name", metavar="NAME")
    add_service_arguments(remove)
    fetch = sub.add_parser("fetch", help="install a kernel of --service here (hash-checked)")
    fetch.add_argument("name", metavar="NAME")
    add_service_arguments(fetch, required=True)


def run(args: argparse.Namespace, out: Callable[[str], None] = print) -> None:
    """Run one of COMMANDS, or `list --user`; KernelError/OSError for main to report."""
    if args.command == "new":
        sdk.new_project(args.name, args.lang, args.dir)
        out(
            f"made {args.dir}: {args.name} in {args.lang}; next: veraltheim-kernel build {args.dir}"
        )
    elif args.command == "build":
        path = sdk.build_project(args.dir, args.toolchain)
        out(f"built {path} ({path.stat().st_size} bytes)")
    elif args.command == "test":
        package = sdk.project_package(args.dir)
        checked = check_kernel(package, reserved_names=builtin_names())
        n = len(package.examples)
        ms = checked.examples_ms
        out(f"{checked.spec.name}: all checks passed, {n} example(s) ran in {ms:.1f} ms")
    elif args.command == "add":
        package = read_package(args.module, args.spec)
        if args.service:
            reply = asyncio.run(
                remote(args, lambda r: r.upload_kernel(package.wasm, package.wire_spec()))
            )
            out(f"uploaded {reply['name']} (sha256 {reply['sha256'][:16]}...) to {args.service}")
        else:
            store = UserKernelStore()
            info = install(package, store, installed_by=whoami(), reserved_names=builtin_names())
            out(f"installed {info.name} (sha256 {info.sha256[:16]}...) in {store.root}")
    elif args.command == "remove":
        if args.service:
            asyncio.run(remote(args, lambda r: r.remove_kernel(args.name)))
            out(f"removed {args.name} from {args.service}")
        else:
            UserKernelStore().remove(args.name)
            out(f"removed {args.name}")
    elif args.command == "fetch":
        wasm, wire = asyncio.run(remote(args, lambda r: r.fetch_kernel(args.name)))
        package = package_from_wire(wasm, wire)
        if package.name != args.name:
            raise InstallRefused("spec", f"the service sent {package.name!r}, not {args.name!r}")
        store = UserKernelStore()
        info = install(
            package,
            store,
            installed_by=f"{whoami()} from {args.service}",
            reserved_names=builtin_names(),
        )
        out(f"fetched {info.name} (sha256 {info.sha256[:16]}...) into {store.root}")
    elif args.command == "list":
        list_user(args, out)


def list_user(args: argparse.Namespace, out: Callable[[str], None]) -> None:
    if getattr(args, "service", None):
        catalogue = asyncio.run(remote(args, lambda r: _catalogue(r)))
        rows = [
            {"name": n, **(e.get("installed") or {})}
            for n, e in sorted(catalogue.items())
            if e.get("installed")
        ]
    else:
        rows = [k.to_dict() for k in UserKernelStore().list()]
    if args.json:
        out(json.dumps(rows, indent=2))
        return
    if not rows:
        out("no user kernels installed")
    for r in rows:
        at = datetime.datetime.fromtimestamp(r["installed_at"]).isoformat(timespec="seconds")
        out(f"{r['name']}  sha256 {r['sha256'][:16]}...  by {r['installed_by']}  at {at}")


async def _catalogue(remote_compute: Any) -> dict[str, Any]:
    return remote_compute.catalogue


def read_package(module: Path, spec: Path) -> KernelPackage:
    size = module.stat().st_size
    if size > MAX_MODULE_BYTES:
        raise InstallRefused("size", f"module is {size} bytes, over {MAX_MODULE_BYTES}")
    spec_dict, examples = load_spec_file(spec)
    return KernelPackage(module.read_bytes(), spec_dict, examples)


def builtin_names() -> frozenset[str]:
    return frozenset(load_manifest().kernels)


def whoami() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "me"


async def remote(args: argparse.Namespace, action: Callable[[Any], Any]) -> Any:
    """Connect to --service, join the compute topic, run `action(RemoteCompute)`."""
    sock = await open_socket(args.service, args.token)
    try:
        if sock.state != ConnectionState.CONNECTED:
            raise KernelError(
                f"service {args.service} unreachable: {sock.offline_reason or 'no connection'}"
            )
        rc = RemoteCompute(sock, COMPUTE_TOPIC)
        await rc.wait_joined(10.0)
        return await action(rc)
    finally:
        await sock.disconnect()


def is_user_command(args: argparse.Namespace) -> bool:
    return args.command in COMMANDS or (args.command == "list" and getattr(args, "user", False))

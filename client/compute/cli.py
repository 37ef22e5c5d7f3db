"""`veraltheim-kernel`: wasm/cli.py's `list` and `run`, with `run` dispatched local or remote.

    veraltheim-kernel run KERNEL [--input F] --output F [--param N=V ...]
        [--where auto|local|remote] [--service ws://HOST:PORT] [--token T] [--json-decision]

Users' own kernels (new, build, test, add, remove, fetch, list --user): kernel_commands.py.

Without --service it is wasm/cli.py's `run` (local, nothing extra printed). With it, the
dispatcher decides (or obeys --where) and one line on stderr says where the job ran and why;
--json-decision prints the whole decision record as JSON on stderr instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from veraltheim.client.compute import kernel_commands
from veraltheim.client.compute.decision import Decision
from veraltheim.client.compute.dispatcher import Dispatcher
from veraltheim.client.compute.remote import open_socket
from veraltheim.client.compute.routes import Route
from veraltheim.client.net.state import ConnectionState
from veraltheim.wasm import KernelError, KernelSpec, UnknownKernel, kernel_spec_from_dict
from veraltheim.wasm import cli as wasm_cli


def build_parser() -> argparse.ArgumentParser:
    """wasm/cli.py's commands, `run` with the dispatch options added."""
    parser = wasm_cli.OneLineParser(
        prog=wasm_cli.PROG, description="List Veraltheim's kernels; run one here or on a service."
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=wasm_cli.OneLineParser)
    lister = sub.add_parser("list", help="list kernels with their params")
    lister.add_argument("--json", action="store_true", help="machine-readable catalogue")
    lister.add_argument("--user", action="store_true", help="only the kernels users installed")
    kernel_commands.add_service_arguments(lister)
    wasm_cli.add_runtime_arguments(lister)
    kernel_commands.add_parsers(sub)
    run = sub.add_parser("run", help="run a kernel on files, here or on --service")
    wasm_cli.add_run_arguments(run)
    wasm_cli.add_runtime_arguments(run)
    run.add_argument(
        "--where", choices=list(Route), default=Route.AUTO, help="where to run (default auto)"
    )
    run.add_argument("--service", metavar="URL", help="service to offload to: ws[s]://HOST:PORT")
    run.add_argument("--token", help="access token for --service")
    run.add_argument(
        "--json-decision", action="store_true", help="print the decision record as JSON"
    )
    return parser


async def run_command(args: argparse.Namespace) -> Decision:
    rt = wasm_cli.make_runtime(args)
    sock = await open_socket(args.service, args.token) if args.service else None
    try:
        if sock is not None and sock.state != ConnectionState.CONNECTED:
            reason = sock.offline_reason or "no connection"
            sys.stderr.write(f"{wasm_cli.PROG}: service {args.service} unreachable: {reason}\n")
            await sock.disconnect()  # offline for this one run: no waiting for a reconnect
        dispatcher = Dispatcher(rt, sock)
        await dispatcher.connect()
        spec = kernel_spec(rt, dispatcher, args.kernel)
        wasm_cli.check_output_path(spec, args.output)
        params = wasm_cli.parse_params(spec, args.param)
        data, params = wasm_cli.load_job_input(spec, args.input, params)
        show = wasm_cli.progress_printer(spec.name)
        try:
            output, decision = await dispatcher.run(
                spec.name,
                data,
                params,
                where=args.where,
                progress=show,
                deadline_s=args.deadline,
            )
        finally:
            if show is not None:
                sys.stderr.write("\r\x1b[K")
        wasm_cli.save_job_output(spec, args.output, output, params)
        return decision
    finally:
        if sock is not None:
            await sock.disconnect()


def kernel_spec(rt: Any, dispatcher: Dispatcher, name: str) -> KernelSpec:
    try:
        return rt.spec(name)
    except UnknownKernel:
        remote = dispatcher.remote
        entry = remote.catalogue.get(name) if remote is not None else None
        if entry is not None:
            return kernel_spec_from_dict({**entry, "name": name})
        if remote is None or not remote.catalogue:
            raise UnknownKernel(
                f"unknown kernel {name!r} here; the service (which may have it) is not reachable"
            ) from None
        raise


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if kernel_commands.is_user_command(args):
        try:
            kernel_commands.run(args)
        except KernelError as e:
            return wasm_cli.fail(str(e))
        except OSError as e:
            where = f"{e.filename}: " if e.filename else ""
            return wasm_cli.fail(f"{where}{e.strerror or e}")
        return 0
    if args.command == "list":
        if args.service:
            return wasm_cli.fail("list --service needs --user (the service's user kernels)", 2)
        return wasm_cli.main(argv)
    if args.service is None and args.where == Route.REMOTE:
        return wasm_cli.fail("--where remote needs --service URL", 2)
    # Without a service and without asking for the record: exactly wasm/cli.py's `run`.
    plain = args.service is None and not args.json_decision
    decision: Decision | None = None
    try:
        if plain:
            wasm_cli.cmd_run(args)
        else:
            # The link's warnings would repeat, unformatted, what run_command says in one line.
            logging.getLogger("veraltheim.client").setLevel(logging.ERROR)
            decision = asyncio.run(run_command(args))
    except KernelError as e:
        return wasm_cli.fail(str(e))
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        return wasm_cli.fail(f"{where}{e.strerror or e}")
    except KeyboardInterrupt:
        return wasm_cli.fail("interrupted", 130)
    if decision is not None and args.json_decision:
        sys.stderr.write(json.dumps(decision.to_dict()) + "\n")
    elif decision is not None:
        sys.stderr.write(f"{wasm_cli.PROG}: {decision.summary()}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`veraltheim-kernel`: list the kernels, or run one on files.

    veraltheim-kernel list [--json]
    veraltheim-kernel run KERNEL [--input FILE] --output FILE [--param NAME=VALUE ...]
                          [--deadline S] [--memory-limit MiB]

Images (rgba8 kernels) are PNG/JPEG files; width and height come from the image. Other
kernels read and write raw bytes ("-" is stdin/stdout); data.stats writes JSON.

The pieces are reusable: `add_run_arguments` puts the run options on any parser,
`perform_run(spec, args, execute)` does the file I/O around any executor (local or
remote), and `main` turns every KernelError/OSError into one line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from .errors import BadInput, Cancelled, KernelError
from .images import image_format, read_image, write_image
from .job import CancelToken
from .limits import DEFAULT_DEADLINE_S, DEFAULT_MEMORY_LIMIT_BYTES, WASM32_MAX_BYTES
from .manifest import KernelSpec
from .outputs import decode_output
from .runtime import Runtime

PROG = "veraltheim-kernel"
MIB = 1 << 20
STDIO = "-"
# Params that name an rgba8 output's width, in order of preference (resize has out_width).
OUTPUT_WIDTH_PARAMS = ("out_width", "width")

Executor = Callable[[bytes, dict[str, Any]], bytes]

# What `run` reads and writes for each kind, as `list` tells the user.
INPUT_FILES = {
    "rgba8": "image file (PNG/JPEG); width and height come from it",
    "f64": "raw little-endian f64 values",
    "i32": "raw little-endian i32 values",
    "numeric": "raw little-endian values of the dtype param",
    "bytes": "any file",
    "none": "none (no --input)",
}
OUTPUT_FILES = {
    "rgba8": "image file (.png, .jpg)",
    "f64": "raw little-endian f64 values",
    "i32": "raw little-endian i32 values",
    "numeric": "raw little-endian values of the dtype param",
    "bytes": "raw bytes",
    "stats": "JSON",
}


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (exit 2), like every other error of the CLI."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--manifest", type=Path, metavar="FILE", help="kernel manifest (default: the built-in one)"
    )
    parser.add_argument(
        "--cache-dir", type=Path, metavar="DIR", help="compiled-module cache directory"
    )


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """KERNEL, --input, --output, --param, --deadline, --memory-limit."""
    parser.add_argument("kernel", metavar="KERNEL", help="kernel name, e.g. image.blur")
    parser.add_argument(
        "--input",
        "-i",
        metavar="FILE",
        help="input: an image for image kernels, raw bytes otherwise (- = stdin); "
        "none for fractal.mandelbrot",
    )
    parser.add_argument(
        "--output",
        "-o",
        metavar="FILE",
        required=True,
        help="output: .png/.jpg for image results, JSON for data.stats, raw bytes otherwise "
        "(- = stdout)",
    )
    parser.add_argument(
        "--param",
        "-p",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="kernel parameter (repeatable)",
    )
    parser.add_argument(
        "--deadline",
        type=positive_float,
        default=DEFAULT_DEADLINE_S,
        metavar="S",
        help=f"stop the kernel after S seconds (default {DEFAULT_DEADLINE_S:g})",
    )
    parser.add_argument(
        "--memory-limit",
        type=positive_float,
        default=DEFAULT_MEMORY_LIMIT_BYTES / MIB,
        metavar="MiB",
        help=f"kernel memory cap (default {DEFAULT_MEMORY_LIMIT_BYTES // MIB} MiB, "
        f"at most {WASM32_MAX_BYTES // MIB})",
    )


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = OneLineParser(prog=prog, description="List and run Veraltheim's WebAssembly kernels.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    lister = sub.add_parser("list", help="list kernels with their params")
    lister.add_argument("--json", action="store_true", help="machine-readable catalogue")
    add_runtime_arguments(lister)
    runner = sub.add_parser("run", help="run a kernel on files")
    add_run_arguments(runner)
    add_runtime_arguments(runner)
    return parser


# -- params and files --


def parse_params(spec: KernelSpec, pairs: Sequence[str]) -> dict[str, Any]:
    """NAME=VALUE strings -> typed values (ranges are checked later by the runtime)."""
    params: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name, text = name.strip(), text.strip()
        if not sep or not name:
            raise BadInput(f"--param wants NAME=VALUE, got {pair!r}")
        p = spec.param(name)
        if p is None:
            known = ", ".join(q.name for q in spec.params) or "none"
            raise BadInput(f"{spec.name}: unknown param {name!r} (params: {known})")
        params[name] = _typed(spec, p.type, name, text)
    return params


def _typed(spec: KernelSpec, ptype: str, name: str, text: str) -> Any:
    if ptype == "enum":
        return text
    try:
        value = float(text)
        if ptype == "int":
            return int(text) if text.lstrip("+-").isdigit() else value
        return value
    except ValueError:
        raise BadInput(f"{spec.name}: param {name!r} must be a number, got {text!r}") from None


def load_job_input(
    spec: KernelSpec, path: str | None, params: dict[str, Any]
) -> tuple[bytes, dict[str, Any]]:
    """The input buffer for a kernel, and its params completed from the image (width, height)
    and the kernel's defaults, checked (BadInput before anything runs)."""
    if spec.input_kind == "none":
        if path is not None:
            raise BadInput(f"{spec.name} takes no input; drop --input")
        data = b""
    elif path is None:
        raise BadInput(f"{spec.name} needs --input FILE")
    elif spec.input_kind == "rgba8":
        data, width, height = read_image(path)
        for name, value in (("width", width), ("height", height)):
            if name in params and params[name] != value:
                raise BadInput(f"--param {name}={params[name]} contradicts the image ({value})")
        params = {**params, "width": width, "height": height}
    elif path == STDIO:
        data = sys.stdin.buffer.read()
    else:
        data = Path(path).read_bytes()
    # Defaults filled in: save_job_output needs e.g. mandelbrot's default width.
    return data, spec.validate_params(params)


def save_job_output(spec: KernelSpec, path: str, output: bytes, params: dict[str, Any]) -> None:
    """PNG/JPEG for rgba8 output, JSON for stats, raw bytes otherwise."""
    if spec.output_kind == "rgba8":
        width = next((int(params[n]) for n in OUTPUT_WIDTH_PARAMS if params.get(n)), 0)
        if not width:
            raise KernelError(f"{spec.name}: no width param tells the output image's width")
        if len(output) % (4 * width):
            raise KernelError(f"{spec.name}: {len(output)} output bytes are not rows of {width} px")
        write_image(path, output, width, len(output) // (4 * width))
        return
    if spec.output_kind == "stats":
        text = json.dumps(decode_output(spec, output), indent=2) + "\n"
        data = text.encode()
    else:
        data = output
    if path == STDIO:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        Path(path).write_bytes(data)


def check_output_path(spec: KernelSpec, path: str) -> None:
    """Refuse an output the kernel's result cannot be written to, before running it."""
    if spec.output_kind == "rgba8":
        if path == STDIO:
            raise BadInput(f"{spec.name} writes an image: give --output a .png or .jpg name")
        image_format(path)


def perform_run(spec: KernelSpec, args: argparse.Namespace, execute: Executor) -> None:
    """Parse --param, read --input, `execute(data, params) -> output`, write --output."""
    check_output_path(spec, args.output)
    params = parse_params(spec, args.param)
    data, params = load_job_input(spec, args.input, params)
    save_job_output(spec, args.output, execute(data, params), params)


def make_runtime(args: argparse.Namespace) -> Runtime:
    limit_mib = getattr(args, "memory_limit", DEFAULT_MEMORY_LIMIT_BYTES / MIB)
    limit = int(limit_mib * MIB)
    if not 0 < limit <= WASM32_MAX_BYTES:
        raise BadInput(f"--memory-limit is more than 0 and at most {WASM32_MAX_BYTES // MIB} MiB")
    return Runtime(args.manifest, cache_dir=args.cache_dir, memory_limit_bytes=limit)


def progress_printer(kernel: str) -> Callable[[int, int], None] | None:
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        if total > 0:
            sys.stderr.write(f"\r{kernel}: {100 * done // total:3d}%")
            sys.stderr.flush()

    return show


# -- commands --


def cmd_list(args: argparse.Namespace) -> None:
    rt = make_runtime(args)
    specs = rt.catalogue()
    if args.json:
        print(json.dumps([s.to_dict() for s in specs], indent=2))
        return
    for spec in specs:
        print(spec.name)
        for line in textwrap.wrap(spec.description, 96):
            print(f"    {line}")
        print(f"    input: {INPUT_FILES.get(spec.input_kind, spec.input_kind)}")
        print(f"    output: {OUTPUT_FILES.get(spec.output_kind, spec.output_kind)}")
        name_w = max((len(p.name) for p in spec.params), default=0)
        range_w = max((len(p.range_text()) for p in spec.params), default=0)
        for p in spec.params:
            line = f"    --param {p.name:<{name_w}}  {p.range_text():<{range_w}}  {p.description}"
            print(line.rstrip())
        print()


@contextlib.contextmanager
def interrupt_cancels(token: CancelToken) -> Iterator[None]:
    """Ctrl-C cancels the job through its token.

    A KeyboardInterrupt raised inside wasmtime's callbacks would be swallowed by ctypes,
    so SIGINT only sets the token; the job stops at the next epoch tick.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda _sig, _frame: token.cancel())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if token.cancelled:
        raise KeyboardInterrupt


def cmd_run(args: argparse.Namespace) -> None:
    rt = make_runtime(args)
    spec = rt.spec(args.kernel)
    show = progress_printer(spec.name)
    token = CancelToken()

    def local(data: bytes, params: dict[str, Any]) -> bytes:
        return rt.run(
            spec.name, data, params, deadline_s=args.deadline, cancel=token, progress=show
        ).output

    try:
        with interrupt_cancels(token):
            try:
                perform_run(spec, args, local)
            except Cancelled:
                if not token.cancelled:
                    raise
    finally:
        if show is not None:
            sys.stderr.write("\r\x1b[K")


def fail(message: str, code: int = 1) -> int:
    """One line on stderr; the exit code for main to return."""
    sys.stderr.write(f"{PROG}: error: {' '.join(message.split())}\n")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        {"list": cmd_list, "run": cmd_run}[args.command](args)
    except KernelError as e:
        return fail(str(e))
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): not an error; keep exit-time flushes quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        return fail(f"{where}{e.strerror or e}")
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

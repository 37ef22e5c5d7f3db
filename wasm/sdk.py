"""The kernel SDK: starter projects (`new`), building them (`build`) and running their examples
(`test`). Templates live in wasm/sdk/; the C runtime is the built-ins' own vh.h + vh.c.

C builds with clang + wasm-ld (`--target=wasm32`) or with zig cc (`pip install ziglang`, any OS);
Rust with a rustc that has the wasm32-unknown-unknown target (rustup, or Debian's rustc +
libstd-rust-dev-wasm32: /usr/bin/rustc; $RUSTC picks one).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import KernelError
from .user_kernels import NAME_PATTERN, KernelPackage, load_spec_file

SDK_DIR = Path(__file__).resolve().parent / "sdk"
C_RUNTIME = tuple(Path(__file__).resolve().parent / "src" / f for f in ("vh.h", "vh.c"))
SPEC_FILE = "kernel.toml"
LANGS = ("c", "rust")
TOOLCHAINS = ("auto", "clang", "zig", "rustc")
# The wasm flags of a user's C build (no SIMD: zig and older clangs agree on these).
C_FLAGS = (
    "-O2",
    "-mbulk-memory",
    "-nostdlib",
    "-Wl,--no-entry",
    "-Wl,-z,stack-size=65536",
)
RUST_TARGET = "wasm32-unknown-unknown"
RUST_FLAGS = (
    "--edition",
    "2021",
    "--crate-type",
    "cdylib",
    "-O",
    "-C",
    "panic=abort",
    "-C",
    "strip=debuginfo",
)
RUSTC_CANDIDATES = ("rustc", "/usr/bin/rustc")
BUILD_TIMEOUT_S = 300
BUILD_BLOCKS = {
    "c": 'lang = "c"\nsources = ["kernel.c", "vh.c"]\noutput = "kernel.wasm"',
    "rust": 'lang = "rust"\nsources = ["src/lib.rs"]\noutput = "kernel.wasm"',
}


class SdkError(KernelError):
    """A project that cannot be made, built or tested; one line saying why."""


def export_name(kernel: str) -> str:
    """`user.invert` -> `user_invert`: the export (and C function) a starter kernel gets."""
    return re.sub(r"[^a-z0-9_]", "_", kernel)


def new_project(name: str, lang: str, dest: str | Path) -> list[Path]:
    """Write a working starter project for kernel `name` into `dest` (new or empty)."""
    if not NAME_PATTERN.match(name) or len(name) > 64:
        raise SdkError(
            f"kernel name must look like 'user.invert' (lowercase, dotted), got {name!r}"
        )
    if lang not in LANGS:
        raise SdkError(f"--lang must be one of {', '.join(LANGS)}, got {lang!r}")
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise SdkError(f"{dest} exists and is not an empty directory")
    export = export_name(name)
    subst = {
        "{{NAME}}": name,
        "{{EXPORT}}": export,
        "{{CRATE}}": export.replace("_", "-"),
        "{{BUILD}}": BUILD_BLOCKS[lang],
    }
    files: dict[str, bytes] = {SPEC_FILE: _fill((SDK_DIR / SPEC_FILE).read_text(), subst)}
    template = SDK_DIR / lang
    for src in sorted(template.rglob("*")):
        if src.is_file():
            files[src.relative_to(template).as_posix()] = _fill(src.read_text(), subst)
    if lang == "c":
        for src in C_RUNTIME:
            files[src.name] = src.read_bytes()
    # The example: a 2x2 image and its inverse (alpha kept).
    pixels = bytes([0, 0, 0, 255, 255, 255, 255, 128, 10, 20, 30, 0, 200, 100, 50, 7])
    files["examples/tiny.rgba"] = pixels
    files["examples/tiny.expected"] = bytes(
        v if i % 4 == 3 else 255 - v for i, v in enumerate(pixels)
    )
    written = []
    for rel, data in files.items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if path.name == "build.sh":
            path.chmod(0o755)
        written.append(path)
    return written


def _fill(text: str, subst: dict[str, str]) -> bytes:
    for key, value in subst.items():
        text = text.replace(key, value)
    return text.encode()


# ---- toolchains -------------------------------------------------------------------------------


def clang_command() -> list[str] | None:
    clang = shutil.which("clang") or shutil.which("clang-14")
    linker = shutil.which("wasm-ld") or shutil.which("wasm-ld-14")
    return [clang, "--target=wasm32"] if clang and linker else None


def zig_command() -> list[str] | None:
    if importlib.util.find_spec("ziglang") is None:
        return None
    return [sys.executable, "-m", "ziglang", "cc", "--target=wasm32-freestanding"]


def rustc_command() -> list[str] | None:
    """A rustc that can build for wasm32-unknown-unknown: $RUSTC, else the first one found
    (a rustup toolchain without the target is skipped, e.g. for Debian's /usr/bin/rustc)."""
    explicit = os.environ.get("RUSTC")
    for cand in [explicit] if explicit else RUSTC_CANDIDATES:
        path = shutil.which(cand)
        if path and _has_wasm_target(path):
            return [path]
    return None


def _has_wasm_target(rustc: str) -> bool:
    try:
        out = subprocess.run(
            [rustc, "--print", "target-libdir", "--target", RUST_TARGET],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    libdir = Path(out.stdout.strip())
    return out.returncode == 0 and libdir.is_dir() and any(libdir.glob("libcore-*.rlib"))


def compiler(lang: str, toolchain: str = "auto") -> list[str]:
    """The compiler command for a project's language and the requested toolchain."""
    if toolchain not in TOOLCHAINS:
        raise SdkError(f"--toolchain must be one of {', '.join(TOOLCHAINS)}")
    if lang == "rust":
        if toolchain not in ("auto", "rustc"):
            raise SdkError(f"a Rust project builds with rustc, not {toolchain}")
        cmd = rustc_command()
        if cmd is None:
            raise SdkError(
                f"no rustc with the {RUST_TARGET} target: `rustup target add {RUST_TARGET}`, "
                "or Debian's rustc + libstd-rust-dev-wasm32 (RUSTC=/usr/bin/rustc)"
            )
        return cmd
    if toolchain == "rustc":
        raise SdkError("a C project builds with clang or zig, not rustc")
    finders = {"clang": clang_command, "zig": zig_command}
    order = ("clang", "zig") if toolchain == "auto" else (toolchain,)
    for name in order:
        cmd = finders[name]()
        if cmd is not None:
            return cmd
    raise SdkError(
        "no C compiler for wasm32: install clang + lld (Debian: apt-get install clang lld) "
        "or zig (pip install ziglang)"
    )


# ---- build and test ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Project:
    root: Path
    lang: str
    sources: tuple[str, ...]
    output: Path

    @property
    def spec_path(self) -> Path:
        return self.root / SPEC_FILE


def load_project(root: str | Path) -> Project:
    root = Path(root)
    spec_path = root / SPEC_FILE
    try:
        raw = tomllib.loads(spec_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SdkError(f"{root} has no {SPEC_FILE}: not a kernel project") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise SdkError(f"{spec_path}: {e}") from None
    build: Any = raw.get("build") or {}
    lang = build.get("lang")
    if lang not in LANGS:
        raise SdkError(f"{spec_path}: [build] lang must be one of {', '.join(LANGS)}")
    sources = build.get("sources") or []
    if not sources or not all(isinstance(s, str) for s in sources):
        raise SdkError(f"{spec_path}: [build] sources must list the source files")
    return Project(root, lang, tuple(sources), root / str(build.get("output", "kernel.wasm")))


def build_project(root: str | Path, toolchain: str = "auto") -> Path:
    """Compile the project's sources to its output .wasm; SdkError with the compiler's errors."""
    project = load_project(root)
    cmd = compiler(project.lang, toolchain)
    out = project.output.resolve()
    if project.lang == "rust":
        cmd = [*cmd, *RUST_FLAGS, "--target", RUST_TARGET, "-o", str(out), project.sources[0]]
    else:
        cmd = [*cmd, *C_FLAGS, "-o", str(out), *project.sources]
    try:
        proc = subprocess.run(
            cmd,
            cwd=project.root,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SdkError(f"cannot run {cmd[0]}: {e}") from None
    if proc.returncode != 0:
        raise SdkError(f"build failed ({' '.join(cmd[:3])}...):\n{proc.stderr.strip()}")
    return out


def project_package(root: str | Path) -> KernelPackage:
    """The built module with the project's spec and examples (build first)."""
    project = load_project(root)
    try:
        wasm = project.output.read_bytes()
    except FileNotFoundError:
        raise SdkError(
            f"{project.output} does not exist: run `veraltheim-kernel build` first"
        ) from None
    spec, examples = load_spec_file(project.spec_path)
    return KernelPackage(wasm, spec, examples)

"""The PyInstaller bundle: one folder with every program of [project.scripts]."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from common import ROOT, Project, fresh, run

HERE = Path(__file__).resolve().parent


def write_launchers(p: Project, folder: Path) -> None:
    """One script per program, named run-NAME.py (not importable: none shadows a package)."""
    fresh(folder)
    for name, target in p.entry_points.items():
        module, func = target.split(":")
        (folder / f"run-{name}.py").write_text(
            f"from {module} import {func}\n\nraise SystemExit({func}())\n"
        )


def build_bundle(p: Project, build: Path, prune: bool = True) -> Path:
    """The PyInstaller folder: build/bundle/veraltheim (and Veraltheim.app on macOS)."""
    import icons

    site = fresh(build / "site")
    # The wheel's own install (its package data rules, not the checkout's files) feeds the bundle.
    run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", site, ROOT])  # fmt: skip
    write_launchers(p, build / "launchers")
    env = {
        **os.environ,
        "VERALTHEIM_SITE": str(site),
        "VERALTHEIM_LAUNCHERS": str(build / "launchers"),
        "VERALTHEIM_VERSION": p.version,
        "VERALTHEIM_NO_PRUNE": "" if prune else "1",
    }
    if sys.platform in ("win32", "darwin"):
        made = icons.render(build / "icons")
        env["VERALTHEIM_ICON"] = str(made["ico" if sys.platform == "win32" else "icns"])
    work, out = fresh(build / "pyinstaller"), build / "bundle"
    shutil.rmtree(out, ignore_errors=True)
    run([sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
         "--workpath", work, "--distpath", out, HERE / "veraltheim.spec"], env=env)  # fmt: skip
    if sys.platform.startswith("linux"):
        drop_foreign_runpaths(out / "veraltheim")
        if prune:
            strip_libraries(out / "veraltheim", p.programs)
    return out / "veraltheim"


def strip_libraries(bundle: Path, programs: tuple[str, ...]) -> None:
    """strip --strip-unneeded (Debian's rule; a sixth of the bundle), except the programs (their
    archive is appended to the file) and the libraries auditwheel patched into a wheel's
    NAME.libs/ folder: stripping those breaks them (numpy's OpenBLAS: "ELF load command
    address/offset not page-aligned")."""
    from linux import elf_files

    files = [
        str(f)
        for f in elf_files(bundle)
        if not any(part.endswith(".libs") for part in f.relative_to(bundle).parts)
        and f.relative_to(bundle).as_posix() not in programs
    ]
    for i in range(0, len(files), 100):
        subprocess.run(["strip", "--strip-unneeded", *files[i : i + 100]], check=True)


def drop_foreign_runpaths(bundle: Path) -> None:
    """Remove RUNPATH entries that name the build machine (a pyenv Python's own lib folder):
    on a target they point nowhere, or somewhere nobody vetted. $ORIGIN ones stay."""
    if not shutil.which("patchelf"):
        raise SystemExit("patchelf is needed (scripts/bootstrap.sh --dist installs it)")
    from linux import elf_files

    for f in elf_files(bundle):
        rpath = subprocess.run(["patchelf", "--print-rpath", f], capture_output=True,
                               text=True).stdout.strip()  # fmt: skip
        kept = [e for e in rpath.split(":") if e.startswith("$ORIGIN")]
        if rpath and kept != rpath.split(":"):
            fix = ["--set-rpath", ":".join(kept)] if kept else ["--remove-rpath"]
            subprocess.run(["patchelf", *fix, str(f)], check=True)

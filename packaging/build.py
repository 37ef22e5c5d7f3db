"""`make dist`: the PyInstaller bundle, then every installer this machine can build, into dist/.

    python packaging/build.py [TARGET ...] [--bundle DIR] [--from DIR] [--build DIR] [--out DIR]

TARGETs: bundle, tarball, deb, rpm, appdir (Linux); nsis, msi (Windows installers, from the
Windows bundle or any folder given with --from); app, dmg (macOS). None: all this OS builds.
--bundle DIR reuses a bundle built before instead of building one.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, Context, project, tree_size


def targets() -> dict[str, tuple[Callable[[Context], Path], bool]]:
    """name -> (builder, built by default on this machine)."""
    import linux
    import macos
    import windows

    on_linux, on_mac, on_win = (sys.platform.startswith(x) for x in ("linux", "darwin", "win32"))
    has = shutil.which
    return {
        "bundle": (lambda c: c.bundle(), True),
        "tarball": (linux.tarball, on_linux),
        "deb": (linux.deb, on_linux and bool(has("dpkg-deb"))),
        "rpm": (linux.rpm, on_linux and bool(has("rpmbuild"))),
        "appdir": (linux.appdir, on_linux),
        "nsis": (windows.nsis, on_win and bool(has("makensis"))),
        "msi": (windows.msi, False),  # wixl runs on Linux: CI feeds it the Windows bundle
        "app": (macos.app, on_mac),
        "dmg": (macos.dmg, on_mac and bool(has("hdiutil"))),
    }


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("targets", nargs="*", metavar="TARGET", help=", ".join(targets()))
    ap.add_argument("--bundle", type=Path, help="use this bundle instead of building one")
    ap.add_argument("--from", dest="from_dir", type=Path, help="folder for nsis/msi")
    ap.add_argument("--build", type=Path, default=ROOT / "build" / "dist", help="work folder")
    ap.add_argument("--quick", action="store_true", help="light compression (for tests)")
    ap.add_argument("--out", type=Path, default=ROOT / "dist", help="installers go here")
    return ap


def main(argv: list[str] | None = None) -> int:
    known, ap = targets(), parser()
    args = ap.parse_args(argv)
    if unknown := [t for t in args.targets if t not in known]:
        ap.error(f"unknown target {unknown[0]!r}: one of {', '.join(known)}")
    chosen = args.targets or [name for name, (_f, default) in known.items() if default]
    args.build.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    ctx = Context(project(), args.build.resolve(), args.out.resolve(), args.bundle, args.from_dir)
    ctx.quick = args.quick
    for name in chosen:
        start = time.monotonic()
        made = known[name][0](ctx)
        size = tree_size(made) if made.is_dir() else made.stat().st_size
        print(f"built {name}: {made} ({size / 2**20:.1f} MiB, {time.monotonic() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

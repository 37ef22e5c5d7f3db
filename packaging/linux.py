"""Linux installers from the bundle: .deb, .rpm, a tarball, an AppDir (-> AppImage).

Every package has one layout (see packaging/README.md): the bundle in /opt/veraltheim, the
programs in /usr/bin, the desktop entry, AppStream metainfo, hicolor icons, the system unit and
the user unit, all taken from resources/ (the same files the wheel installs).
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from string import Template

import icons
from common import APP_ID, ROOT, SERVICE, Context, Project, fresh, run, tree_size

HERE = Path(__file__).resolve().parent / "linux"
RESOURCES = ROOT / "resources"
PREFIX = "opt/veraltheim"
UNIT = f"{SERVICE}.service"
STATE_DIRS = (f"/var/lib/{SERVICE}", f"/var/lib/private/{SERVICE}",
              f"/var/cache/{SERVICE}", f"/var/cache/private/{SERVICE}")  # fmt: skip
SYNOPSIS = "desktop workbench and compute service for WebAssembly kernels"
MAINTAINER = "Veraltheim developers <maintainers@veraltheim.org>"


def stage(ctx: Context, root: Path) -> Path:
    """The installed file tree under root (files hard-linked from the bundle where possible)."""
    p, bundle = ctx.project, ctx.bundle()
    fresh(root)
    shutil.copytree(bundle, root / PREFIX, symlinks=True, copy_function=_link_or_copy)
    normalize_modes(root / PREFIX, p.programs)
    (root / "usr/bin").mkdir(parents=True)
    for name in p.programs:
        (root / "usr/bin" / name).symlink_to(f"/{PREFIX}/{name}")
    share = root / "usr/share"
    _install(RESOURCES / "veraltheim.desktop", share / "applications")
    _install(RESOURCES / f"{APP_ID}.metainfo.xml", share / "metainfo")
    made = icons.render(ctx.build / "icons")
    _install(made["svg"], share / "icons/hicolor/scalable/apps", "veraltheim.svg")
    for size in icons.PNG_SIZES:
        _install(made[size], share / f"icons/hicolor/{size}x{size}/apps", "veraltheim.png")
    _install(RESOURCES / "systemd" / UNIT, root / "usr/lib/systemd/system")
    _install(RESOURCES / "systemd/user" / UNIT, root / "usr/lib/systemd/user")
    return root


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _install(src: Path, folder: Path, name: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / (name or src.name)
    shutil.copyfile(src, dst)
    dst.chmod(0o644)
    return dst


def normalize_modes(tree: Path, programs: tuple[str, ...]) -> None:
    """Folders 755, the programs 755, every other file 644 (shared objects need no x bit)."""
    for dirpath, dirnames, filenames in os.walk(tree):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), 0o755, follow_symlinks=False)
        for f in filenames:
            path = os.path.join(dirpath, f)
            if not os.path.islink(path):
                top = dirpath == str(tree) and f in programs
                os.chmod(path, 0o755 if top else 0o644)


# --- system libraries the bundle needs (derived, not guessed) ----------------------------------


def elf_files(tree: Path) -> list[Path]:
    found = []
    for f in sorted(tree.rglob("*")):
        if f.is_file() and not f.is_symlink():
            with f.open("rb") as fh:
                if fh.read(4) == b"\x7fELF":
                    found.append(f)
    return found


def external_libraries(bundle: Path) -> tuple[set[str], list[str]]:
    """(paths of the libraries outside the bundle that its ELF files load, libraries not found),
    resolved by ldd the way the frozen programs resolve them (the bundle's folder first)."""
    env = {**os.environ, "LD_LIBRARY_PATH": str(bundle / "_internal")}
    outside, missing = set(), []
    files = elf_files(bundle)
    for i in range(0, len(files), 64):
        out = subprocess.run(["ldd", *map(str, files[i : i + 64])], env=env,
                             capture_output=True, text=True).stdout  # fmt: skip
        current = ""
        for line in out.splitlines():
            if not line.startswith(("\t", " ")):
                current = line.rstrip(":")
            elif "=> not found" in line:
                missing.append(f"{current}: {line.split()[0]}")
            elif "=> /" in line:
                path = line.split("=>")[1].split("(")[0].strip()
                if not path.startswith(str(bundle)):
                    outside.add(path)
    return outside, missing


def debian_depends(bundle: Path) -> list[str]:
    """The Debian packages that own every library the bundle loads from the system."""
    outside, missing = external_libraries(bundle)
    if missing:
        raise SystemExit("libraries not found on this machine (install them, then build):\n"
                         + "\n".join(sorted(set(missing))))  # fmt: skip
    queries = sorted({q for path in outside for q in (path, os.path.realpath(path))})
    out = subprocess.run(["dpkg-query", "-S", *queries], capture_output=True, text=True).stdout
    owners = {line.split(":")[0].split(",")[0].strip() for line in out.splitlines() if ": " in line}
    found = {line.rsplit(": ", 1)[1] for line in out.splitlines() if ": " in line}
    unowned = [p for p in outside if p not in found and os.path.realpath(p) not in found]
    if unowned:
        raise SystemExit(f"no Debian package owns {unowned}: cannot name a dependency")
    return sorted(owners)


# --- .deb --------------------------------------------------------------------------------------


def deb_arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip


def deb(ctx: Context) -> Path:
    p = ctx.project
    root = stage(ctx, ctx.build / "deb-root")
    doc = root / "usr/share/doc" / p.name
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(_template("copyright", p))
    (doc / "changelog.gz").write_bytes(gzip.compress(_changelog(p).encode(), 9, mtime=0))
    _install(HERE / "deb" / "lintian-overrides", root / "usr/share/lintian/overrides", p.name)
    control = root / "DEBIAN"
    control.mkdir()
    fields = {
        "Package": p.name,
        "Version": p.version,
        "Architecture": deb_arch(),
        "Maintainer": MAINTAINER,
        "Installed-Size": str(tree_size(root) // 1024),
        "Depends": ", ".join(debian_depends(ctx.bundle())),
        "Section": "science",
        "Priority": "optional",
        "Homepage": "https://veraltheim.org/",
        "Description": f"{SYNOPSIS}\n{_long_description()}",
    }
    (control / "control").write_text("".join(f"{k}: {v}\n" for k, v in fields.items()))
    for script in ("postinst", "prerm", "postrm"):
        target = control / script
        target.write_text(_template(f"deb/{script}", p))
        target.chmod(0o755)
    out = ctx.out / f"{p.name}_{p.version}_{fields['Architecture']}.deb"
    level = "-z1" if ctx.quick else "-z6"
    run(["dpkg-deb", "--root-owner-group", "-Zgzip", level, "--build", root, out],
        stdout=subprocess.DEVNULL)  # fmt: skip
    return out


def _long_description() -> str:
    text = (
        "Veraltheim is a desktop workbench (PySide6/QML) for WebAssembly compute kernels, and a "
        "compute service the workbench offloads to; runs and notes are shared live between "
        "everyone connected to one service.\n.\nThis package holds the app (veraltheim), the "
        "service (veraltheim-service, a systemd unit) and the command-line kernel runner "
        "(veraltheim-kernel), frozen with their own Python in /opt/veraltheim."
    )
    import textwrap

    return "\n".join(
        " " + line if line != "." else " ."
        for para in text.split("\n")
        for line in (textwrap.wrap(para, 78) if para != "." else ["."])
    )


def _changelog(p: Project) -> str:
    when = format_datetime(datetime(2026, 12, 6, tzinfo=UTC))
    return (
        f"{p.name} ({p.version}) unstable; urgency=medium\n\n"
        "  * Installers for Linux, Windows and macOS.\n\n"
        f" -- {MAINTAINER}  {when}\n"
    )


def _template(name: str, p: Project) -> str:
    return Template((HERE / name).read_text()).substitute(
        NAME=p.name, VERSION=p.version, UNIT=UNIT, PREFIX=f"/{PREFIX}",
        STATE_DIRS=" ".join(STATE_DIRS), PROGRAMS=" ".join(p.programs),
    )  # fmt: skip


# --- .rpm --------------------------------------------------------------------------------------


def rpm(ctx: Context) -> Path:
    p = ctx.project
    root = stage(ctx, ctx.build / "rpm-root")
    top = fresh(ctx.build / "rpmbuild")
    # rpm finds the system libraries itself (elfdeps: one Requires per soname); the libraries
    # the bundle carries are neither required from the system nor provided to it.
    own = sorted({f.name.split(".so")[0] for f in elf_files(ctx.bundle()) if ".so" in f.name})
    spec = top / f"{p.name}.spec"
    spec.write_text(
        _template("rpm/veraltheim.spec", p)
        .replace("@STAGE@", str(root))
        .replace("@OWN_LIBS@", "|".join(map(_regex_escape, own)))
        .replace("@DESCRIPTION@", _long_description().replace("\n .", "\n").replace("\n ", "\n"))
        .replace("@SUMMARY@", SYNOPSIS)
    )
    run(["rpmbuild", "-bb", "--quiet", "--define", f"_topdir {top}",
         "--define", f"_rpmdir {top / 'out'}", spec], stdout=subprocess.DEVNULL)  # fmt: skip
    (made,) = (top / "out").rglob("*.rpm")
    out = ctx.out / made.name
    shutil.move(made, out)
    return out


def _regex_escape(text: str) -> str:
    return "".join("\\" + c if c in ".+()[]{}^$*?|\\" else c for c in text)


# --- tarball and AppDir ------------------------------------------------------------------------


def tarball(ctx: Context) -> Path:
    p = ctx.project
    name = f"{p.name}-{p.version}-linux-{os.uname().machine}"
    folder = fresh(ctx.build / "tar") / name
    shutil.copytree(ctx.bundle(), folder, symlinks=True, copy_function=_link_or_copy)
    out = ctx.out / f"{name}.tar.gz"
    run(["tar", "-C", folder.parent, "--owner=0", "--group=0", "-czf", out, name])
    return out


def appdir(ctx: Context) -> Path:
    """An AppDir; `appimagetool DIR` packs it into an AppImage where the AppImage runtime can be
    downloaded (it cannot here: no network beyond the package registries)."""
    p = ctx.project
    machine = os.uname().machine
    folder = ctx.out / f"{p.name}-{p.version}-{machine}.AppDir"
    stage_root = stage(ctx, folder)  # the same tree as the packages, rooted at the AppDir
    usr = stage_root / "usr"
    shutil.rmtree(stage_root / "usr/lib/systemd")  # no units inside an AppImage
    bundle_dir = usr / "lib" / p.name
    (stage_root / PREFIX).rename(bundle_dir)
    shutil.rmtree(stage_root / "opt")
    for name in p.programs:
        (usr / "bin" / name).unlink()
        (usr / "bin" / name).symlink_to(f"../lib/{p.name}/{name}")
    apprun = folder / "AppRun"
    apprun.write_text(
        '#!/bin/sh\n# AppImage entry: the app, or another program named by $1 (e.g. "service").\n'
        'HERE="$(dirname "$(readlink -f "$0")")"\n'
        f'case "$1" in\n  service|kernel) p="{p.name}-$1"; shift;;\n  *) p="{p.name}";;\nesac\n'
        f'exec "$HERE/usr/lib/{p.name}/$p" "$@"\n'
    )
    apprun.chmod(0o755)
    shutil.copyfile(RESOURCES / "veraltheim.desktop", folder / "veraltheim.desktop")
    shutil.copyfile(ctx.build / "icons" / "veraltheim-256.png", folder / "veraltheim.png")
    (folder / ".DirIcon").symlink_to("veraltheim.png")
    if shutil.which("appimagetool"):
        image = ctx.out / f"{p.name}-{p.version}-{machine}.AppImage"
        run(["appimagetool", folder, image], env={**os.environ, "ARCH": machine})
        return image
    print("appdir: no appimagetool here (its AppImage runtime is downloaded from GitHub); "
          f"run `appimagetool {folder}` where it can be, as the CI workflow does")  # fmt: skip
    return folder

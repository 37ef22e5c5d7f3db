"""Windows installers from the Windows bundle (or any folder: --from): NSIS and MSI.

makensis (Debian's nsis, or NSIS on Windows) and wixl (Debian's wixl/msitools) both run on
Linux, so CI builds the MSI on a Linux runner from the Windows bundle it downloads.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import icons
from common import Context, fresh, run

HERE = Path(__file__).resolve().parent / "windows"


def _source(ctx: Context) -> Path:
    return (ctx.from_dir or ctx.bundle()).resolve()


def nsis(ctx: Context) -> Path:
    p, folder = ctx.project, _source(ctx)
    ico = icons.render(ctx.build / "icons")["ico"]
    out = ctx.out / f"{p.name}-{p.version}-setup.exe"
    defines = {"VERSION": p.version, "SRCDIR": folder, "OUTFILE": out, "ICON": ico}
    run(["makensis", "-V2", *(f"-D{k}={v}" for k, v in defines.items()), HERE / "veraltheim.nsi"])
    return out


def msi(ctx: Context) -> Path:
    p, folder = ctx.project, _source(ctx)
    # wixl reads files relative to the .wxs (absolute paths fail): everything goes in one folder.
    stage = fresh(ctx.build / "msi")
    (stage / "files").symlink_to(folder, target_is_directory=True)
    shutil.copyfile(icons.render(ctx.build / "icons")["ico"], stage / "veraltheim.ico")
    shutil.copyfile(HERE / "veraltheim.wxs", stage / "veraltheim.wxs")
    files = "".join(f"files/{f.relative_to(folder).as_posix()}\n"
                    for f in sorted(folder.rglob("*")) if f.is_file())  # fmt: skip
    heat = ["wixl-heat", "-p", "files/", "--directory-ref", "INSTALLDIR",
            "--component-group", "Bundle", "--var", "var.SourceDir"]  # fmt: skip
    (stage / "files.wxs").write_text(subprocess.run(heat, input=files, capture_output=True,
                                                    text=True, check=True).stdout)  # fmt: skip
    out = ctx.out / f"{p.name}-{p.version}-x64.msi"
    run(["wixl", "-a", "x64", "-D", f"Version={p.version}", "-D", "SourceDir=files",
         "-D", "IconFile=veraltheim.ico", "-o", out, "veraltheim.wxs", "files.wxs"],
        cwd=stage)  # fmt: skip
    return out

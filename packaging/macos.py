"""macOS: the .app (PyInstaller's BUNDLE in veraltheim.spec, Info.plist from
packaging/macos/Info.plist) with the service's LaunchAgent inside, and a .dmg made by hdiutil.
Both run on macOS only (CI's macOS runner)."""

from __future__ import annotations

import plistlib
import shutil
from pathlib import Path

from common import ROOT, SERVICE, Context, fresh, run

APP = "Veraltheim.app"
AGENT = ROOT / "resources" / "launchd" / "org.veraltheim.service.plist"


def launch_agent(app_path: str = f"/Applications/{APP}") -> bytes:
    """resources/launchd's agent, pointed at the service inside the installed .app."""
    agent = plistlib.loads(AGENT.read_bytes())
    agent["ProgramArguments"][0] = f"{app_path}/Contents/MacOS/{SERVICE}"
    return plistlib.dumps(agent)


def app(ctx: Context) -> Path:
    bundle = ctx.bundle()
    made = bundle.parent / APP
    resources = made / "Contents" / "Resources"
    (resources / AGENT.name).write_bytes(launch_agent())
    return made


def dmg(ctx: Context) -> Path:
    p = ctx.project
    made = app(ctx)
    stage = fresh(ctx.build / "dmg")
    shutil.copytree(made, stage / APP, symlinks=True)
    (stage / "Applications").symlink_to("/Applications")
    out = ctx.out / f"Veraltheim-{p.version}.dmg"
    run(["hdiutil", "create", "-volname", f"Veraltheim {p.version}", "-srcfolder", stage,
         "-fs", "HFS+", "-format", "UDZO", "-ov", out])  # fmt: skip
    return out

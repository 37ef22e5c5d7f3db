"""What every recipe shares: the project's metadata (from pyproject.toml), the build context,
small file helpers."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP_ID = "org.veraltheim.Veraltheim"  # AppStream id, macOS bundle id
SERVICE = "veraltheim-service"  # the program the units, the launchd agent and Windows start


@dataclass(frozen=True)
class Project:
    name: str
    version: str
    summary: str
    license: str
    programs: tuple[str, ...]  # [project.scripts], the app (named like the project) first
    entry_points: dict[str, str]


def project(root: Path = ROOT) -> Project:
    meta = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    scripts = meta["scripts"]
    programs = sorted(scripts, key=lambda n: (n != meta["name"], n))
    return Project(
        name=meta["name"],
        version=meta["version"],
        summary=meta["description"],
        license=meta["license"],
        programs=tuple(programs),
        entry_points=dict(scripts),
    )


def run(cmd: list[str | Path], **kw) -> subprocess.CompletedProcess:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def tree_size(path: Path) -> int:
    """Bytes of the regular files under path (symlinks not followed, hard links once)."""
    seen, total = set(), 0
    for f in path.rglob("*"):
        st = f.lstat()
        if f.is_file() and not f.is_symlink() and (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


@dataclass
class Context:
    project: Project
    build: Path
    out: Path
    bundle_dir: Path | None = None  # --bundle
    from_dir: Path | None = None  # --from (Windows installers)
    quick: bool = False  # --quick: light compression (tests)

    def bundle(self) -> Path:
        if self.bundle_dir is None:
            from bundle import build_bundle

            self.bundle_dir = build_bundle(self.project, self.build)
        return self.bundle_dir

"""Launch to first frame: the installed (frozen) app against the same app from the venv.
Prints ONE JSON object.

The frozen app is /usr/bin/veraltheim when the .deb is installed, else the bundle `make dist`
left in build/dist/bundle/veraltheim (or --app PATH). Each launch runs `--offscreen --local-only
--screenshot` with VERALTHEIM_REPORT_FIRST_FRAME set, and the time is spawn -> first frame;
launches alternate between the two so load on the machine hits both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CANDIDATES = (Path("/usr/bin/veraltheim"), ROOT / "build/dist/bundle/veraltheim/veraltheim")
LAUNCHES = 5


def first_frame_ms(cmd: list[str], tmp: Path) -> float:
    from veraltheim.client.ui.app import FIRST_FRAME_ENV
    from veraltheim.client.ui.settings import CONFIG_DIR_ENV, DATA_DIR_ENV

    env = {
        **os.environ,
        FIRST_FRAME_ENV: "1",
        CONFIG_DIR_ENV: str(tmp / "config"),
        DATA_DIR_ENV: str(tmp / "data"),
        "QT_QPA_PLATFORM": "offscreen",
    }
    args = ["--offscreen", "--local-only", "--screenshot", str(tmp / "first.png")]
    start = time.monotonic()
    out = subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=120)
    line = next((x for x in out.stdout.splitlines() if x.startswith("first-frame ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"{cmd[0]} showed no frame:\n{out.stdout}\n{out.stderr}")
    return (float(line.split()[1]) - start) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--app", type=Path, help="the frozen app (default: installed, else bundle)")
    args = ap.parse_args()
    frozen = args.app or next((p for p in CANDIDATES if p.exists()), None)
    if frozen is None:
        print(json.dumps({"skipped": "no frozen app: install the .deb or run `make dist`"}))
        return 0
    venv = [sys.executable, "-m", "veraltheim.client.ui.app"]
    times: dict[str, list[float]] = {"frozen": [], "venv": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(LAUNCHES):
            times["frozen"].append(first_frame_ms([str(frozen)], Path(tmp)))
            times["venv"].append(first_frame_ms(venv, Path(tmp)))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        json.dumps(
            {
                "frozen_app": str(frozen),
                "launches": LAUNCHES,
                "first_frame_ms_median": {k: round(v, 1) for k, v in med.items()},
                "first_frame_ms_all": {k: [round(x) for x in v] for k, v in times.items()},
                "frozen_over_venv": round(med["frozen"] / med["venv"], 3),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

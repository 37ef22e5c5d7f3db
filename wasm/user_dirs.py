"""Where users' installed kernels live (the Runtime reads it; wasm/user_kernels.py writes it)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs
from veraltheim.protocol.constants import APP_DATA_DIR_ENV, APP_NAME

USER_KERNELS_ENV = "VERALTHEIM_USER_KERNELS_DIR"


def default_user_kernels_dir() -> Path:
    """$VERALTHEIM_USER_KERNELS_DIR, else the app's data dir (as the app and the CLI use it)."""
    explicit = os.environ.get(USER_KERNELS_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get(APP_DATA_DIR_ENV) or platformdirs.user_data_dir(APP_NAME)
    return Path(base) / "user-kernels"

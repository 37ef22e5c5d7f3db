"""The token signing secret: from the config (or VERALTHEIM_SECRET_KEY), else generated once.

The generated secret lives in `<data_dir>/secret_key` (mode 0600), so `run`, `start` and
`token issue` on the same data dir all sign and verify with the same key.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
from pathlib import Path

from veraltheim.service.config import ServiceConfig

SECRET_FILE = "secret_key"
SECRET_BYTES = 48

log = logging.getLogger(__name__)


class SecretError(RuntimeError):
    """The secret file exists but cannot be used."""


def secret_path(data_dir: Path) -> Path:
    return data_dir / SECRET_FILE


def load_or_create_secret(config: ServiceConfig) -> str:
    """The configured secret, or the one kept in the data dir (made on first use)."""
    if config.secret_key:
        return config.secret_key
    path = secret_path(config.data_dir)
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    draft = path.with_name(f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secret + "\n")
        # link() publishes the whole file, or fails if another process was first: two processes
        # starting at once agree on one secret, and neither reads a half-written file.
        os.link(draft, path)
    except FileExistsError:
        return _read(path)
    except OSError as e:
        raise SecretError(f"cannot create secret file {path}: {e.strerror}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            draft.unlink()
    log.info("generated a new token signing secret in %s", path)
    return secret


def _read(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        raise
    except OSError as e:
        raise SecretError(f"cannot read secret file {path}: {e.strerror}") from None
    if not text:
        raise SecretError(f"secret file {path} is empty; delete it to generate a new secret")
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("secret file %s is readable by others; run: chmod 600 %s", path, path)
    return text

"""On-disk cache of compiled modules.

A blob is keyed by wasmtime version + engine config + module sha256. Each file carries
the sha256 of its payload: a truncated, garbage or foreign file is deleted and the
module recompiled, never trusted and never a crash. Writes are atomic (temp + rename).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from pathlib import Path

import platformdirs
import wasmtime
from veraltheim.protocol.constants import APP_NAME

log = logging.getLogger(__name__)

BLOB_MAGIC = b"VHCWASM1"
BLOB_SUFFIX = ".cwasm"
_HEADER_LEN = len(BLOB_MAGIC) + 32


def default_cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir(APP_NAME)) / "wasm"


class CompiledCache:
    """`load(engine, key_prefix, wasm_bytes, sha256) -> (Module, from_cache)`."""

    def __init__(self, root: str | Path | None, engine_key: str) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.dir = self.root / engine_key

    def path_for(self, module_sha256: str) -> Path:
        return self.dir / f"{module_sha256}{BLOB_SUFFIX}"

    def load(
        self, engine: wasmtime.Engine, wasm: bytes, module_sha256: str
    ) -> tuple[wasmtime.Module, bool]:
        path = self.path_for(module_sha256)
        module = self._read(engine, path)
        if module is not None:
            return module, True
        module = wasmtime.Module(engine, wasm)
        self._write(path, bytes(module.serialize()))
        return module, False

    def _read(self, engine: wasmtime.Engine, path: Path) -> wasmtime.Module | None:
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            log.warning("cannot read compiled module %s: %s", path, e)
            return None
        payload = blob[_HEADER_LEN:]
        if (
            len(blob) <= _HEADER_LEN
            or not blob.startswith(BLOB_MAGIC)
            or hashlib.sha256(payload).digest() != blob[len(BLOB_MAGIC) : _HEADER_LEN]
        ):
            log.warning("discarding corrupt compiled module %s", path)
            self._discard(path)
            return None
        try:
            return wasmtime.Module.deserialize(engine, payload)
        except wasmtime.WasmtimeError as e:
            # Written by another wasmtime build or for another CPU: recompile.
            log.warning("discarding stale compiled module %s: %s", path, str(e).splitlines()[0])
            self._discard(path)
            return None

    def _write(self, path: Path, payload: bytes) -> None:
        blob = BLOB_MAGIC + hashlib.sha256(payload).digest() + payload
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            os.replace(tmp, path)
            tmp = None
        except OSError as e:
            # A read-only or full cache only costs a compile next time.
            log.warning("cannot cache compiled module at %s: %s", path, e)
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    @staticmethod
    def _discard(path: Path) -> None:
        with contextlib.suppress(OSError):
            path.unlink()

"""The on-disk cache of compiled modules: reused when good, recompiled when not, never a crash."""

from __future__ import annotations

import hashlib
import sys

import pytest
import wasmtime
from veraltheim.wasm import Runtime
from veraltheim.wasm.cache import BLOB_MAGIC, default_cache_dir
from veraltheim.wasm.engine import engine_key, wasmtime_version

from tests.support.wat import busy_reference, write_test_manifest


@pytest.fixture
def manifest(tmp_path):
    return write_test_manifest(tmp_path / "modules")


def blob_path(rt: Runtime):
    return rt._cache.path_for(rt.manifest.modules["test"].sha256)


def fresh_load(manifest, cache_dir):
    rt = Runtime(manifest, cache_dir=cache_dir)
    return rt, rt.load_module("test")


def works(rt: Runtime) -> bool:
    out = rt.run("test.busy", b"", {"n": 777}).output
    return int.from_bytes(out, "little") == busy_reference(777)


def test_first_load_compiles_and_the_next_load_comes_from_the_cache(manifest, tmp_path):
    rt, first = fresh_load(manifest, tmp_path / "c")
    assert not first.from_cache
    assert blob_path(rt).is_file()
    assert blob_path(rt).read_bytes().startswith(BLOB_MAGIC)
    rt2, second = fresh_load(manifest, tmp_path / "c")
    assert second.from_cache
    assert works(rt2)


def test_cache_key_has_wasmtime_version_config_and_module_hash(manifest, tmp_path):
    rt, _ = fresh_load(manifest, tmp_path / "c")
    path = blob_path(rt)
    assert path.parent.name == engine_key()
    assert engine_key().startswith(f"wasmtime-{wasmtime_version()}-")
    assert path.name.startswith(rt.manifest.modules["test"].sha256)


def garbage(blob: bytes) -> bytes:
    return b"\x7fELF" + bytes(range(256)) * 40


def truncated(blob: bytes) -> bytes:
    return blob[: len(blob) // 2]


def header_only(blob: bytes) -> bytes:
    return blob[: len(BLOB_MAGIC) + 32]


def flipped_payload_byte(blob: bytes) -> bytes:
    b = bytearray(blob)
    b[len(b) // 2] ^= 0x55
    return bytes(b)


def other_engine_config(blob: bytes) -> bytes:
    """A well-formed blob (magic + right digest) compiled by an engine with other settings."""
    config = wasmtime.Config()
    config.consume_fuel = True
    engine = wasmtime.Engine(config)
    payload = bytes(wasmtime.Module(engine, wasmtime.wat2wasm("(module)")).serialize())
    return BLOB_MAGIC + hashlib.sha256(payload).digest() + payload


def raw_wasmtime_blob(blob: bytes) -> bytes:
    """A valid wasmtime serialization without our header: not ours, so not trusted."""
    return blob[len(BLOB_MAGIC) + 32 :]


@pytest.mark.parametrize(
    "corrupt",
    [garbage, truncated, header_only, flipped_payload_byte, other_engine_config, raw_wasmtime_blob],
)
def test_a_corrupt_or_stale_cache_file_is_recompiled(manifest, tmp_path, corrupt, caplog):
    rt, _ = fresh_load(manifest, tmp_path / "c")
    path = blob_path(rt)
    path.write_bytes(corrupt(path.read_bytes()))
    rt2, load = fresh_load(manifest, tmp_path / "c")
    assert not load.from_cache
    assert works(rt2)
    assert "discarding" in caplog.text
    # The bad file was replaced by a good one.
    _, again = fresh_load(manifest, tmp_path / "c")
    assert again.from_cache


def test_an_empty_cache_file_is_recompiled(manifest, tmp_path):
    rt, _ = fresh_load(manifest, tmp_path / "c")
    blob_path(rt).write_bytes(b"")
    rt2, load = fresh_load(manifest, tmp_path / "c")
    assert not load.from_cache and works(rt2)


def test_an_unwritable_cache_only_costs_a_compile(manifest, tmp_path):
    blocker = tmp_path / "c"
    blocker.write_text("a file where the cache directory should be")
    rt, load = fresh_load(manifest, blocker)
    assert not load.from_cache
    assert works(rt)


def test_writes_leave_no_temporary_files(manifest, tmp_path):
    rt, _ = fresh_load(manifest, tmp_path / "c")
    assert [p.name for p in blob_path(rt).parent.iterdir()] == [blob_path(rt).name]


@pytest.mark.skipif(sys.platform != "linux", reason="XDG layout")
def test_default_cache_dir_is_the_user_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "veraltheim" / "wasm"

"""wasm.images: image files <-> RGBA8 buffers."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from veraltheim.wasm import BadInput
from veraltheim.wasm.images import read_image, write_image


def test_png_round_trip_is_exact(tmp_path):
    rgba = np.random.default_rng(0).integers(0, 256, (5, 7, 4), dtype=np.uint8)
    write_image(tmp_path / "a.png", rgba.tobytes(), 7, 5)
    data, w, h = read_image(tmp_path / "a.png")
    assert (w, h) == (7, 5)
    assert data == rgba.tobytes()


def test_reading_converts_any_mode_to_rgba(tmp_path):
    Image.new("L", (3, 2), 100).save(tmp_path / "grey.png")
    Image.new("RGB", (2, 2), (1, 2, 3)).save(tmp_path / "rgb.jpg", quality=100)
    data, w, h = read_image(tmp_path / "grey.png")
    assert (w, h) == (3, 2) and data == bytes([100, 100, 100, 255]) * 6
    data, w, h = read_image(tmp_path / "rgb.jpg")
    assert (w, h) == (2, 2) and len(data) == 16 and data[3::4] == b"\xff" * 4


def test_reading_applies_the_exif_orientation(tmp_path):
    rgba = np.random.default_rng(1).integers(0, 256, (2, 3, 4), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: viewers rotate it 90 degrees clockwise
    Image.fromarray(rgba, "RGBA").save(tmp_path / "phone.png", exif=exif)
    data, w, h = read_image(tmp_path / "phone.png")
    assert (w, h) == (2, 3)
    assert data == np.ascontiguousarray(np.rot90(rgba, -1)).tobytes()


def test_jpeg_is_written_without_alpha(tmp_path):
    write_image(tmp_path / "a.jpg", bytes([200, 10, 10, 128]) * 4, 2, 2)
    with Image.open(tmp_path / "a.jpg") as img:
        assert img.format == "JPEG" and img.mode == "RGB" and img.size == (2, 2)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("absent.png", None, "no such file"),
        ("junk.png", b"not an image at all", "not an image"),
        ("cut.png", "truncated", "cannot read the image"),
    ],
)
def test_unreadable_files_are_bad_input(tmp_path, name, content, message):
    path = tmp_path / name
    if content == "truncated":
        Image.new("RGBA", (64, 64), (1, 2, 3, 4)).save(path)
        path.write_bytes(path.read_bytes()[:60])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(BadInput, match=message):
        read_image(path)


def test_bad_writes_are_bad_input(tmp_path):
    with pytest.raises(BadInput, match="not a 2x2 RGBA8 image"):
        write_image(tmp_path / "a.png", b"\x00" * 15, 2, 2)
    with pytest.raises(BadInput, match="unknown image format"):
        write_image(tmp_path / "a.xyz", b"\x00" * 16, 2, 2)
    with pytest.raises(BadInput, match="cannot write"):
        write_image(tmp_path / "no" / "such" / "dir.png", b"\x00" * 16, 2, 2)

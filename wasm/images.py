"""PNG/JPEG files <-> RGBA8 buffers (Pillow), for the CLI and anyone else who needs them."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import BadInput

# Formats that cannot hold alpha are written as RGB.
_NO_ALPHA = {"JPEG", "BMP"}


def read_image(path: str | Path) -> tuple[bytes, int, int]:
    """(rgba_bytes, width, height) of an image file, upright as viewers show it (EXIF
    orientation applied, e.g. a phone photo); BadInput if it is not one."""
    try:
        with Image.open(path) as img:
            img.load()
            rgba = ImageOps.exif_transpose(img).convert("RGBA")
    except FileNotFoundError:
        raise BadInput(f"no such file: {path}") from None
    except UnidentifiedImageError:
        raise BadInput(f"{path}: not an image Pillow can read") from None
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise BadInput(f"{path}: cannot read the image: {e}") from None
    return rgba.tobytes(), rgba.width, rgba.height


def image_format(path: str | Path) -> str:
    """Pillow's format name for a file name (PNG, JPEG, ...); BadInput if it has none."""
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    if fmt is None:
        raise BadInput(f"{path}: unknown image format (use .png or .jpg)")
    return fmt


def write_image(
    path: str | Path, rgba: bytes | bytearray | memoryview, width: int, height: int
) -> None:
    """Write an RGBA8 buffer; the format follows the file name (PNG, JPEG, ...)."""
    if width <= 0 or height <= 0 or len(rgba) != width * height * 4:
        raise BadInput(f"{len(rgba)} bytes are not a {width}x{height} RGBA8 image")
    img = Image.frombuffer("RGBA", (width, height), bytes(rgba), "raw", "RGBA", 0, 1)
    try:
        fmt = image_format(path)
        if fmt in _NO_ALPHA:
            img = img.convert("RGB")
        img.save(path, format=fmt)
    except (OSError, ValueError, KeyError) as e:
        raise BadInput(f"{path}: cannot write the image: {e}") from None

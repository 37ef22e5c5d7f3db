"""Turn a file the user picked into a kernel's input bytes (no Qt here).

rgba8 kernels take images (PNG/JPEG via wasm.images) and get their width/height params from the
picture; f64/numeric kernels take CSV/text numbers or raw little-endian binary; bytes kernels take
the file as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from veraltheim.client.ui.units import human_bytes

if TYPE_CHECKING:
    import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
TEXT_SUFFIXES = (".csv", ".txt", ".tsv")
NUMBER_SPLIT = re.compile(r"[,;\s]+")
DTYPES = {"f64": "<f8", "i32": "<i4"}  # numpy dtypes, named: numpy loads with the first file


class InputError(ValueError):
    """The picked file cannot be this kernel's input; the message says why and what to pick."""


@dataclass
class KernelInput:
    data: bytes
    summary: str  # e.g. "photo.png: 640 x 480 image"
    params: dict[str, int] = field(default_factory=dict)  # set from the file (image size)
    image_size: tuple[int, int] | None = None
    path: Path | None = None


def file_filters(input_kind: str) -> list[str]:
    """Name filters for the open dialog, in Qt's "Label (*.a *.b)" form."""
    if input_kind == "rgba8":
        return ["Images (*.png *.jpg *.jpeg)", "All files (*)"]
    if input_kind in ("f64", "numeric"):
        return [
            "Numbers (*.csv *.txt *.tsv)",
            "Raw binary (*.bin *.f64 *.i32 *.raw)",
            "All files (*)",
        ]
    return ["All files (*)"]


def load_input(path: Path, input_kind: str, *, dtype: str = "f64", max_bytes: int) -> KernelInput:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"Cannot open {path.name}: {exc.strerror or exc}.") from exc
    if size > max_bytes:
        raise InputError(
            f"{path.name} is {human_bytes(size)}, over the {human_bytes(max_bytes)} input "
            "limit. Pick a smaller file or raise the limit in Settings."
        )
    if input_kind == "rgba8":
        return _load_image(path)
    if input_kind == "f64":
        return _load_numbers(path, "f64")
    if input_kind == "numeric":
        return _load_numbers(path, dtype)
    if input_kind == "bytes":
        data = path.read_bytes()
        return KernelInput(data, f"{path.name}: {len(data):,} bytes", path=path)
    raise InputError("This kernel takes no input file; it generates its data from the parameters.")


def _load_image(path: Path) -> KernelInput:
    from veraltheim.wasm.images import read_image

    try:
        rgba, width, height = read_image(path)
    except Exception as exc:  # Pillow raises several kinds for a file that is not a picture
        why = str(exc).replace(f"{path}: ", "").replace(str(path), path.name)
        raise InputError(f"{path.name} is not a readable image: {why}") from exc
    return KernelInput(
        bytes(rgba),
        f"{path.name}: {width} x {height} image",
        {"width": width, "height": height},
        (width, height),
        path,
    )


def _load_numbers(path: Path, dtype: str) -> KernelInput:
    import numpy as np  # here, not at start-up: it takes longer to import than the window

    if dtype not in DTYPES:
        raise InputError(f"Unknown number type {dtype!r}.")
    np_dtype = np.dtype(DTYPES[dtype])
    raw = path.read_bytes()
    if path.suffix.lower() in TEXT_SUFFIXES or _looks_like_text(raw):
        values = _parse_numbers(path.name, raw, np_dtype)
        data = values.astype(np_dtype).tobytes()
    else:
        if len(raw) % np_dtype.itemsize:
            raise InputError(
                f"{path.name} is {len(raw)} bytes, not a whole number of {dtype} values "
                f"({np_dtype.itemsize} bytes each). Pick a CSV file or raw {dtype} data."
            )
        data = raw
    count = len(data) // np_dtype.itemsize
    if count == 0:
        raise InputError(f"{path.name} holds no numbers. Pick a file with at least one value.")
    return KernelInput(data, f"{path.name}: {count:,} {dtype} values", path=path)


def _looks_like_text(raw: bytes) -> bool:
    head = raw[:4096]
    return bool(head) and all(b in b"0123456789+-.eEinfaINFAN,; \t\r\n" for b in head)


def _parse_numbers(name: str, raw: bytes, dtype: np.dtype) -> np.ndarray:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name} is not text: {exc.reason} at byte {exc.start}.") from exc
    values = []
    for line_no, line in enumerate(text.splitlines(), 1):
        for token in NUMBER_SPLIT.split(line.strip()):
            if not token:
                continue
            try:
                values.append(int(token) if dtype.kind == "i" else float(token))
            except ValueError:
                if line_no == 1 and not values:
                    break  # a header row
                raise InputError(
                    f"{name}, line {line_no}: {token[:40]!r} is not a number. "
                    "Fix the file or pick another one."
                ) from None
    import numpy as np

    try:
        return np.asarray(values, dtype=dtype)
    except OverflowError as exc:
        raise InputError(f"{name}: a value does not fit in {dtype.name}.") from exc

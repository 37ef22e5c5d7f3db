"""The app's icon in every form an installer wants, drawn from resources/icons/veraltheim.svg:
PNGs for the hicolor theme and the AppDir, .ico for Windows, .icns for macOS."""

from __future__ import annotations

import os
from pathlib import Path

SVG = Path(__file__).resolve().parents[1] / "resources" / "icons" / "veraltheim.svg"
PNG_SIZES = (16, 32, 48, 64, 128, 256, 512)


def render(out: Path) -> dict[str | int, Path]:
    """{size: png, "svg": ..., "ico": ..., "icns": ...} written under out."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PIL import Image
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication([])
    out.mkdir(parents=True, exist_ok=True)
    renderer = QSvgRenderer(str(SVG))
    made: dict[str | int, Path] = {"svg": SVG}
    for size in (*PNG_SIZES, 1024):
        image = QImage(size, size, QImage.Format.Format_ARGB32)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        renderer.render(painter)
        painter.end()
        made[size] = out / f"veraltheim-{size}.png"
        if not image.save(str(made[size])):
            raise OSError(f"could not write {made[size]}")
    big = Image.open(made[1024])
    made["ico"] = out / "veraltheim.ico"
    big.save(made["ico"], sizes=[(s, s) for s in (16, 32, 48, 64, 128, 256)])
    made["icns"] = out / "veraltheim.icns"
    big.save(made["icns"])
    return made

"""Serve in-memory pictures (input and result previews) to QML as image://preview/<id>."""

from __future__ import annotations

import itertools

from PySide6.QtCore import QSize
from PySide6.QtGui import QImage
from PySide6.QtQuick import QQuickImageProvider

PROVIDER_ID = "preview"


def rgba_to_qimage(rgba: bytes, width: int, height: int) -> QImage:
    # .copy() detaches the QImage from the Python buffer, which may be freed afterwards.
    return QImage(rgba, width, height, width * 4, QImage.Format.Format_RGBA8888).copy()


class PreviewImages(QQuickImageProvider):
    """Keeps one picture per slot ("input", "result"); each new picture gets a fresh URL."""

    def __init__(self) -> None:
        super().__init__(QQuickImageProvider.ImageType.Image)
        self._images: dict[str, QImage] = {}
        self._serial = itertools.count(1)

    def put(self, slot: str, image: QImage) -> str:
        self._images[slot] = image
        return f"image://{PROVIDER_ID}/{slot}/{next(self._serial)}"

    def drop(self, slot: str) -> None:
        self._images.pop(slot, None)

    def requestImage(self, id: str, size: QSize, requested: QSize) -> QImage:
        image = self._images.get(id.split("/", 1)[0], QImage())
        if requested.width() > 0 and requested.height() > 0 and not image.isNull():
            from PySide6.QtCore import Qt  # not at start-up: see DISPLAY_ROLE in models.py

            image = image.scaled(
                requested,
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        if size is not None:
            size.setWidth(image.width())
            size.setHeight(image.height())
        return image

"""The QML module `Veraltheim 1.0`: the bridge objects, registered as QML types.

The app makes each bridge object (the Workbench, Runs, ...) itself and hands it to the window as
a required property of Main.qml (QQmlApplicationEngine.setInitialProperties), so QML can name
their types but never create one. scripts/qmllint.py turns TYPES into a .qmltypes file, so
`make lint` checks every view against their real properties, signals and slots.
"""

from __future__ import annotations

from typing import TypeVar

from PySide6.QtCore import QObject
from PySide6.QtQml import QmlElement, QmlUncreatable

# QmlElement reads these from the globals of the module that calls it: this one.
QML_IMPORT_NAME = "Veraltheim"
QML_IMPORT_MAJOR_VERSION = 1
QML_IMPORT_MINOR_VERSION = 0

UNCREATABLE = "made by the app and given to the window"

# Every type registered through qml_type(), in registration order.
TYPES: list[type[QObject]] = []

T = TypeVar("T", bound=type[QObject])


def qml_type(cls: T) -> T:
    """Register `cls` in the Veraltheim module under its class name (not creatable in QML)."""
    TYPES.append(cls)
    return QmlElement(QmlUncreatable(UNCREATABLE)(cls))

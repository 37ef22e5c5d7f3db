"""What the bundle leaves out of PySide6: the QML modules, Qt plugins and libraries our views
never load. Used by veraltheim.spec on the Analysis' binaries and datas (dest, src, typecode).

Kept: QtQml and QtQuick with Controls (Basic and Fusion styles only: others break at run time
if removed but asked for, and we ask for Fusion), Layouts, Dialogs, Templates, Window, Shapes;
QtNetwork (QtQml links it); the xcb, wayland and offscreen platforms.
"""

from __future__ import annotations

import fnmatch
import os
import sys

# Linux: libraries PyInstaller copied from the build machine's OS. Left out, so that the bundle
# uses the target's own copies, which the .deb / .rpm name as dependencies (derived from the
# bundle by packaging/linux.py); copies would go stale and pull in unrelated libraries.
OS_LIB_DIRS = ("/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/")

# Paths inside the bundle, relative to its library folder; "*" also matches "/".
DROP = (
    # QML modules we do not import (our QML: QtQuick, .Controls, .Layouts, .Dialogs)
    "PySide6/Qt/qml/QtTest/*",
    "PySide6/Qt/qml/QtWayland/*",
    "PySide6/Qt/qml/QtQuick/VirtualKeyboard/*",
    "PySide6/Qt/qml/QtQuick/Particles/*",
    "PySide6/Qt/qml/QtQuick/Timeline/*",
    "PySide6/Qt/qml/QtQuick/Scene2D/*",
    "PySide6/Qt/qml/QtQuick/Scene3D/*",
    "PySide6/Qt/qml/QtQuick/Pdf/*",
    "PySide6/Qt/qml/QtQuick/LocalStorage/*",
    "PySide6/Qt/qml/QtQuick/NativeStyle/*",
    "PySide6/Qt/qml/QtQuick/tooling/*",
    "PySide6/Qt/qml/QtQuick/Effects/*",
    "PySide6/Qt/qml/QtQuick/VectorImage/*",
    "PySide6/Qt/qml/QtQml/XmlListModel/*",
    "PySide6/Qt/qml/QtQml/StateMachine/*",
    "PySide6/Qt/qml/QtCore/*",
    "PySide6/Qt/qml/Qt/labs/*",
    "PySide6/Qt/qml/QtQuick/Controls/FluentWinUI3/*",
    "PySide6/Qt/qml/QtNetwork/*",
    # Controls styles other than Basic and Fusion (and their shared "impl" parts)
    *(
        f"PySide6/Qt/qml/QtQuick/Controls/{style}/*"
        for style in ("Material", "Universal", "Imagine", "iOS", "macOS", "Windows")
    ),
    # Qt plugins: keep platforms xcb/wayland/offscreen, their integrations, image formats
    # (png is built in; svg for the icon), the svg icon engine, platform input contexts.
    "PySide6/Qt/plugins/designer/*",
    "PySide6/Qt/plugins/qmllint/*",
    "PySide6/Qt/plugins/qmltooling/*",
    "PySide6/Qt/plugins/sqldrivers/*",
    "PySide6/Qt/plugins/printsupport/*",
    "PySide6/Qt/plugins/networkinformation/*",
    "PySide6/Qt/plugins/tls/*",
    "PySide6/Qt/plugins/generic/*",
    "PySide6/Qt/plugins/platformthemes/libqgtk3*",  # links GTK 3: not worth a dependency
    "PySide6/Qt/plugins/egldeviceintegrations/*",
    "PySide6/Qt/plugins/wayland-graphics-integration-server/*",
    "PySide6/Qt/plugins/platforms/libqminimal*",
    "PySide6/Qt/plugins/platforms/libqvnc*",
    "PySide6/Qt/plugins/platforms/libqlinuxfb*",
    "PySide6/Qt/plugins/platforms/libqeglfs*",
    "PySide6/Qt/plugins/platforms/libqminimalegl*",
    "PySide6/Qt/plugins/platforms/libqvkkhrdisplay*",
    "PySide6/Qt/plugins/imageformats/libqpdf*",
    "PySide6/Qt/plugins/imageformats/libqtiff*",
    "PySide6/Qt/plugins/imageformats/libqwebp*",
    "PySide6/Qt/plugins/imageformats/libqicns*",
    "PySide6/Qt/plugins/imageformats/libqtga*",
    "PySide6/Qt/plugins/imageformats/libqwbmp*",
    "PySide6/Qt/translations/*",
    # Qt libraries only the dropped parts above link
    "PySide6/Qt/lib/libQt6Pdf*",
    "PySide6/Qt/lib/libQt6VirtualKeyboard*",
    "PySide6/Qt/lib/libQt6Quick3D*",
    "PySide6/Qt/lib/libQt6QuickParticles*",
    "PySide6/Qt/lib/libQt6QuickTimeline*",
    "PySide6/Qt/lib/libQt6QuickTest*",
    "PySide6/Qt/lib/libQt6Test*",
    "PySide6/Qt/lib/libQt6Designer*",
    "PySide6/Qt/lib/libQt6Sql*",
    "PySide6/Qt/lib/libQt6PrintSupport*",
    "PySide6/Qt/lib/libQt6QmlLocalStorage*",
    "PySide6/Qt/lib/libQt6QmlXmlListModel*",
    "PySide6/Qt/lib/libQt6LabsAnimation*",
    "PySide6/Qt/lib/libQt6LabsFolderListModel*",
    "PySide6/Qt/lib/libQt6LabsQmlModels*",
    "PySide6/Qt/lib/libQt6LabsSettings*",
    "PySide6/Qt/lib/libQt6LabsSharedImage*",
    "PySide6/Qt/lib/libQt6LabsWavefrontMesh*",
    "PySide6/Qt/lib/libQt6LabsPlatform*",
    "PySide6/Qt/lib/libQt6LabsSynchronizer*",
    "PySide6/Qt/lib/libQt6LabsStyleKit*",
    "PySide6/Qt/lib/libQt6QuickControls2Material*",
    "PySide6/Qt/lib/libQt6QuickControls2Universal*",
    "PySide6/Qt/lib/libQt6QuickControls2Imagine*",
    "PySide6/Qt/lib/libQt6QuickControls2FluentWinUI3*",
    "PySide6/Qt/lib/libQt6QuickTimelineBlendTrees*",
    "PySide6/Qt/lib/libQt6QuickControls2IOS*",
    "PySide6/Qt/lib/libQt6QuickControls2MacOS*",
    "PySide6/Qt/lib/libQt6QuickControls2Windows*",
    "PySide6/Qt/lib/libQt6WaylandCompositor*",
    "PySide6/Qt/lib/libQt6StateMachine*",
)


def dropped(dest: str, src: str = "", kind: str = "") -> bool:
    if any(fnmatch.fnmatch(dest.replace("\\", "/"), pattern) for pattern in DROP):
        return True
    return from_the_os(src, kind)


def from_the_os(src: str, kind: str) -> bool:
    return (
        sys.platform.startswith("linux")
        and kind == "BINARY"
        and os.path.realpath(src).startswith(OS_LIB_DIRS)
    )


def keep(*tocs: list[tuple[str, str, str]]) -> list[list[tuple[str, str, str]]]:
    """Each toc without the dropped entries, nor the symlinks (in any toc) made to them."""
    gone = {dest for toc in tocs for dest, src, kind in toc if dropped(dest, src, kind)}
    return [
        [
            (dest, src, kind)
            for dest, src, kind in toc
            if dest not in gone and not (kind == "SYMLINK" and src in gone)
        ]
        for toc in tocs
    ]

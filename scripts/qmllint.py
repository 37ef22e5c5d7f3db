"""`make lint`'s QML half: qmllint over every view, with the type information of our Python types.

1. The metatypes (moc's JSON) of every type in the Veraltheim QML module (client/ui/qml.py TYPES),
   read from their live QMetaObjects: exact property types, `constant` and notify signals,
   signal parameter names. (pyside6-metaobjectdump reads the source instead: it cannot parse a
   Property whose getter is a lambda and it drops `constant`.)
2. pyside6-qmltyperegistrar turns them into build/qml/Veraltheim/veraltheim.qmltypes + a qmldir.
3. pyside6-qmllint -I build/qml resources/qml/*.qml; any warning fails.

Usage: python scripts/qmllint.py [--types-only] [QML files...]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import PySide6
from PySide6.QtCore import QMetaMethod

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "qml"
QT_METATYPES = Path(PySide6.__file__).parent / "Qt" / "metatypes"
FOREIGN = ("qt6core_metatypes.json", "qt6qml_metatypes.json")
MOC_REVISION = 68


def _tool(name: str) -> str:
    """A pyside6-* tool of this interpreter's environment (the venv's, not one on PATH)."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise SystemExit(f"qmllint: {name} not found (install PySide6-Essentials)")
    return found


def _arguments(types: list[bytes], names: list[bytes]) -> list[dict[str, str]]:
    return [
        {"name": bytes(n).decode() or f"a{i}", "type": bytes(t).decode()}
        for i, (t, n) in enumerate(zip(types, names, strict=True), 1)
    ]


def class_metatypes(cls: type, uncreatable: str) -> dict[str, Any]:
    """One class in moc's JSON form, from its QMetaObject (own members only, not inherited)."""
    mo = cls.staticMetaObject
    properties = []
    for i in range(mo.propertyOffset(), mo.propertyCount()):
        p = mo.property(i)
        entry: dict[str, Any] = {
            "name": p.name(),
            "type": p.typeName(),
            "index": i - mo.propertyOffset(),
            "read": p.name(),
            "constant": p.isConstant(),
            "final": False,
        }
        if p.hasNotifySignal():
            entry["notify"] = bytes(p.notifySignal().name()).decode()
        if p.isWritable():
            entry["write"] = "set" + p.name()[:1].upper() + p.name()[1:]
        properties.append(entry)
    signals, slots = [], []
    for i in range(mo.methodOffset(), mo.methodCount()):
        m = mo.method(i)
        entry = {
            "access": "public",
            "name": bytes(m.name()).decode(),
            "arguments": _arguments(m.parameterTypes(), m.parameterNames()),
            "returnType": m.typeName() or "void",
        }
        if m.methodType() == QMetaMethod.MethodType.Signal:
            signals.append(entry)
        elif m.methodType() == QMetaMethod.MethodType.Slot:
            slots.append(entry)
    return {
        "className": mo.className(),
        "qualifiedClassName": mo.className(),
        "object": True,
        "superClasses": [{"access": "public", "name": mo.superClass().className()}],
        "classInfos": [
            {"name": "QML.Element", "value": "auto"},
            {"name": "QML.Creatable", "value": "false"},
            {"name": "QML.UncreatableReason", "value": uncreatable},
        ],
        "properties": properties,
        "signals": signals,
        "slots": slots,
    }


def write_module(out: Path = BUILD) -> Path:
    """Write the Veraltheim module's qmldir and .qmltypes under `out`; returns `out`."""
    import veraltheim.client.ui.shell  # noqa: F401 - imports (registers) every bridge type
    from veraltheim.client.ui import qml

    module = out / qml.QML_IMPORT_NAME
    module.mkdir(parents=True, exist_ok=True)
    metatypes = module / "veraltheim_metatypes.json"
    classes = [class_metatypes(cls, qml.UNCREATABLE) for cls in qml.TYPES]
    metatypes.write_text(
        json.dumps(
            [{"classes": classes, "outputRevision": MOC_REVISION, "inputFile": qml.__file__}],
            indent=1,
        )
    )
    qmltypes = module / "veraltheim.qmltypes"
    subprocess.run(
        [
            _tool("pyside6-qmltyperegistrar"),
            "--generate-qmltypes",
            str(qmltypes),
            "-o",
            str(module / "registrations.cpp"),  # (C++ registrations: unused, but required)
            "--import-name",
            qml.QML_IMPORT_NAME,
            "--major-version",
            str(qml.QML_IMPORT_MAJOR_VERSION),
            "--minor-version",
            str(qml.QML_IMPORT_MINOR_VERSION),
            "--foreign-types=" + ",".join(str(QT_METATYPES / f) for f in FOREIGN),
            str(metatypes),
        ],
        check=True,
    )
    (module / "qmldir").write_text(
        f"module {qml.QML_IMPORT_NAME}\ntypeinfo {qmltypes.name}\n", encoding="utf-8"
    )
    return out


def lint(files: list[Path], import_dir: Path) -> tuple[int, str]:
    """Run qmllint; returns (number of warnings and errors, its output)."""
    run = subprocess.run(
        [_tool("pyside6-qmllint"), "-I", str(import_dir), *map(str, files)],
        capture_output=True,
        text=True,
    )
    output = run.stdout + run.stderr
    count = sum(line.startswith(("Warning:", "Error:")) for line in output.splitlines())
    if run.returncode and not count:
        count = 1  # failed without saying why in the usual form
    return count, output


def main(argv: list[str]) -> int:
    types_only = "--types-only" in argv
    files = [Path(a) for a in argv if not a.startswith("--")]
    import_dir = write_module()
    if types_only:
        print(f"qmllint: wrote {import_dir}")
        return 0
    files = files or sorted((ROOT / "resources" / "qml").glob("*.qml"))
    count, output = lint(files, import_dir)
    sys.stdout.write(output)
    print(f"qmllint: {len(files)} files, {count} warnings")
    return 1 if count else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

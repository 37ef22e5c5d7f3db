"""The import rules of DESIGN.md: client and service never import each other, and only
client/ui imports Qt."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("client", {"service"}),
        ("service", {"client", "PySide6", "qasync"}),
        ("protocol", {"client", "service", "wasm", "PySide6", "asyncio", "websockets"}),
        ("wasm", {"client", "service", "PySide6"}),
    ],
)
def test_imports_run_one_way(package, forbidden):
    bad = {
        str(p.relative_to(ROOT)): sorted(imported_roots(p) & forbidden)
        for p in sources(package)
        if imported_roots(p) & forbidden
    }
    assert bad == {}


def test_only_client_ui_imports_qt():
    qt = {"PySide6", "qasync"}
    bad = [
        str(p.relative_to(ROOT))
        for p in sources("client")
        if "ui" not in p.relative_to(ROOT / "client").parts[:1] and imported_roots(p) & qt
    ]
    assert bad == []


def test_detects_a_forbidden_import(tmp_path):
    bad = tmp_path / "x.py"
    bad.write_text("import service.app\nfrom PySide6 import QtCore\n")
    assert {"service", "PySide6"} <= imported_roots(bad)

"""The import rules of DESIGN.md: client and service never import each other, and only
client/ui imports Qt."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


OUR_PACKAGES = {"protocol", "wasm", "service", "client", "resources"}


def root_of(module: str) -> str:
    """`veraltheim.service.app` -> `service`; a third-party module -> its top-level name."""
    parts = module.split(".")
    return parts[1] if parts[0] == "veraltheim" and len(parts) > 1 else parts[0]


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def imported_roots(path: Path) -> set[str]:
    return {root_of(m) for m in imported_modules(path)}


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
    bad.write_text("import veraltheim.service.app\nfrom PySide6 import QtCore\n")
    assert {"service", "PySide6"} <= imported_roots(bad)


def test_our_packages_are_imported_only_through_veraltheim():
    """`import service` would find the checkout's folder only by accident of the working directory;
    installed, only `veraltheim.service` exists."""
    everywhere = [
        p
        for d in ("protocol", "wasm", "service", "client", "resources", "tests", "bench")
        for p in sources(d)
    ]
    bad = {
        str(p.relative_to(ROOT)): sorted(
            m for m in imported_modules(p) if m.split(".")[0] in OUR_PACKAGES
        )
        for p in everywhere
        if any(m.split(".")[0] in OUR_PACKAGES for m in imported_modules(p))
    }
    assert bad == {}

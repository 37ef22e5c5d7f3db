"""The import rules of DESIGN.md: client and service never import each other, only client/ui
imports Qt, and no file imports a file that imports it back (TYPE_CHECKING imports included)."""

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


# -- no file-level import cycles ---------------------------------------------------------------


def module_names(root: Path, packages: set[str]) -> dict[str, Path]:
    """`veraltheim.<folder>.<...>` -> file, for every module under the given top-level folders."""
    names = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            names[".".join(["veraltheim", *parts])] = path
    return names


def import_graph(root: Path, packages: set[str]) -> dict[str, set[str]]:
    """Module -> the modules of ours it imports, anywhere in the file (TYPE_CHECKING blocks and
    function bodies included): `from veraltheim.a import b` counts the module `veraltheim.a.b`
    when there is one (Python loads that file), else `veraltheim.a`."""
    names = module_names(root, packages)
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                for alias in node.names:
                    submodule = f"{node.module}.{alias.name}"
                    targets.add(submodule if submodule in names else node.module)
        graph[name] = {t for t in targets if t in names and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (its modules in import order, the first repeated at the end), or None."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path: list[str] = []
        on_path: set[str] = set()
        stack = [(start, iter(sorted(graph[start])))]
        path.append(start)
        on_path.add(start)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                on_path.discard(node)
                done.add(node)
            elif child in on_path:
                return [*path[path.index(child) :], child]
            elif child not in done:
                stack.append((child, iter(sorted(graph[child]))))
                path.append(child)
                on_path.add(child)
    return None


def test_no_file_imports_a_file_that_imports_it_back():
    graph = import_graph(ROOT, OUR_PACKAGES)
    assert len(graph) > 100  # the whole tree was read
    assert find_cycle(graph) is None


def test_the_cycle_check_finds_a_cycle_through_type_checking_imports(tmp_path):
    (tmp_path / "service" / "sub").mkdir(parents=True)
    (tmp_path / "service" / "__init__.py").write_text("")
    (tmp_path / "service" / "sub" / "__init__.py").write_text("")
    (tmp_path / "service" / "a.py").write_text("from veraltheim.service.sub import b\n")
    (tmp_path / "service" / "sub" / "b.py").write_text("import veraltheim.service.c\n")
    back_edge = "from veraltheim.service.a import A"
    (tmp_path / "service" / "c.py").write_text(
        f"from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    {back_edge}\n"
    )
    graph = import_graph(tmp_path, {"service"})
    assert graph["veraltheim.service.a"] == {"veraltheim.service.sub.b"}
    assert find_cycle(graph) == [
        "veraltheim.service.a",
        "veraltheim.service.sub.b",
        "veraltheim.service.c",
        "veraltheim.service.a",
    ]
    (tmp_path / "service" / "c.py").write_text("import json\n")  # the back edge gone
    assert find_cycle(import_graph(tmp_path, {"service"})) is None

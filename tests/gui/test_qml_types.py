"""QML reaches Python only through the Veraltheim module's types (client/ui/qml.py), handed to
Main.qml as required properties: no context properties, and qmllint knows every member."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from veraltheim.client.ui.shell import qml_dir

ROOT = Path(__file__).resolve().parents[2]
LINT = ROOT / "scripts" / "qmllint.py"


def test_the_window_loads_with_no_qml_warning(make_shell):
    shell = make_shell()
    assert shell.qml_warnings == []


def test_no_context_properties():
    calls = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in sorted((ROOT / "client").rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr in ("setContextProperty", "rootContext")
    ]
    assert calls == []


def lint(*files: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(LINT), *map(str, files)], capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_qmllint_with_our_types_is_clean_and_catches_a_typo(tmp_path):
    clean = lint()
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert f"{len(list(qml_dir().glob('*.qml')))} files, 0 warnings" in clean.stdout
    # The same view with one misspelt member of a Python type: qmllint must say so.
    for qml in qml_dir().glob("*.qml"):
        shutil.copy(qml, tmp_path)
    view = tmp_path / "WorkbenchView.qml"
    view.write_text(view.read_text().replace(".kernelDescription", ".kernelDescriptoin"))
    typo = lint(view)
    assert typo.returncode == 1 and "kernelDescriptoin" in typo.stdout


def test_the_views_read_the_link_state_as_flags_not_words(qapp):
    from veraltheim.client.net.state import ConnectionState
    from veraltheim.client.ui.connection import DISCONNECTED, Connection
    from veraltheim.client.ui.notices import Notices

    conn = Connection(Notices())
    flags = lambda: (conn.state, conn.linked, conn.connected, conn.offline)  # noqa: E731
    assert flags() == (DISCONNECTED, False, False, False)
    conn._set_state(ConnectionState.CONNECTED, "")
    assert flags() == ("connected", True, True, False) and type(conn.state) is str
    conn._set_state(ConnectionState.OFFLINE, "refused")
    assert flags() == ("offline", True, False, True)


def test_no_view_spells_out_a_word_python_defines(qapp):
    """Routes, views, link states and notice kinds reach QML as properties, not literals."""
    from veraltheim.client.compute.routes import Route
    from veraltheim.client.net.state import ConnectionState
    from veraltheim.client.ui.connection import DISCONNECTED
    from veraltheim.client.ui.notices import NoticeKind
    from veraltheim.client.ui.views import View

    words = {*Route, *View, *ConnectionState, DISCONNECTED, *NoticeKind}
    found = {
        (qml.name, word)
        for qml in qml_dir().glob("*.qml")
        for word in words
        if f'"{word}"' in qml.read_text()
    }
    # (the Inspector's "Runs" column heading is a heading, not the view's name)
    assert found - {("InspectorView.qml", View.RUNS)} == set()

"""DictListModel, the list of dicts the views read (roles = the dict keys)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from veraltheim.client.ui.models import DISPLAY_ROLE, FIRST_ROLE, DictListModel


def test_its_role_numbers_are_qts():
    assert Qt.ItemDataRole.DisplayRole.value == DISPLAY_ROLE
    assert Qt.ItemDataRole.UserRole.value + 1 == FIRST_ROLE


def test_rows_are_read_by_role_name_and_display_is_the_first_role():
    model = DictListModel(["name", "size"])
    model.reset([{"name": "a", "size": 1}, {"name": "b", "size": 2}])
    roles = {bytes(name).decode(): rid for rid, name in model.roleNames().items()}
    assert roles == {"name": FIRST_ROLE, "size": FIRST_ROLE + 1}
    second = model.index(1)
    assert model.data(second, roles["size"]) == 2
    assert model.data(second, Qt.ItemDataRole.DisplayRole) == "b"
    assert model.data(second, Qt.ItemDataRole.ToolTipRole) is None
    assert model.data(model.index(5), roles["name"]) is None

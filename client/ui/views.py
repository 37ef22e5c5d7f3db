"""The window's views, in tab order (Ctrl+1 ... Ctrl+6); no Qt here, so `--view` parses fast."""

from __future__ import annotations

from enum import StrEnum


class View(StrEnum):
    WORKBENCH = "Workbench"
    RUNS = "Runs"
    NOTES = "Notes"
    CONNECTION = "Connection"
    INSPECTOR = "Inspector"
    SETTINGS = "Settings"


VIEWS = tuple(View)

"""Where a job may run: the user's choice (Auto, Local, Remote) and the side it ran on."""

from __future__ import annotations

from enum import StrEnum


class Route(StrEnum):
    AUTO = "auto"  # the dispatcher chooses by its cost model
    LOCAL = "local"  # in this process (wasm on a worker thread)
    REMOTE = "remote"  # on the service

    @property
    def label(self) -> str:
        """What the app shows for it: "Auto", "Local", "Remote"."""
        return self.value.capitalize()


# Where a job actually runs (a Decision's `where`, a run record's `where`).
SIDES = (Route.LOCAL, Route.REMOTE)

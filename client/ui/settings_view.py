"""The Settings view's controller: edit, validate, save (persisted by client.ui.settings)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from PySide6.QtCore import Property, QObject, Signal, Slot
from veraltheim.client.compute.routes import Route
from veraltheim.client.ui.notices import NoticeKind, Notices
from veraltheim.client.ui.qml import qml_type
from veraltheim.client.ui.settings import (
    SERVICE_URL_HINT,
    AppSettings,
    save_settings,
    service_url_problem,
    settings_path,
)


@qml_type
class SettingsController(QObject):
    changed = Signal()
    saved = Signal()  # after a successful save; the shell reconnects if the address changed

    def __init__(
        self, settings: AppSettings, notices: Notices, path: Path | None = None, parent=None
    ):
        super().__init__(parent)
        self.value = settings
        self.notices = notices
        self.path = path or settings_path()
        self._in_use = ("", "")  # the link's address and token (e.g. from --service), if any

    def set_in_use(self, address: str, token: str) -> None:
        """The view shows the address in use, which may not be the saved one (--service)."""
        self._in_use = (address, token)
        self.changed.emit()

    @Slot(str, str, str, int, float, str, str, str, result=bool)
    def save(
        self,
        service_url: str,
        token: str,
        route: str,
        max_input_mib: int,
        deadline_s: float,
        cache_dir: str,
        user_name: str,
        ca_file: str,
    ) -> bool:
        service_url = service_url.strip()
        problem = service_url_problem(service_url)
        if problem:
            self.notices.show(NoticeKind.ERROR, problem, SERVICE_URL_HINT)
            return False
        ca_file = ca_file.strip()
        if ca_file and not Path(ca_file).is_file():
            self.notices.show(
                NoticeKind.ERROR,
                f"The certificate file {ca_file} does not exist.",
                "Give the path of the service's PEM certificate, or leave the field empty.",
            )
            return False
        if route not in set(Route) or max_input_mib < 1 or deadline_s <= 0:
            self.notices.show(
                NoticeKind.ERROR, "A setting is out of range.", "Check the limits and save again."
            )
            return False
        self.value = dataclasses.replace(
            self.value,
            service_url=service_url,
            token=token.strip(),
            route=Route(route),
            max_input_mib=int(max_input_mib),
            deadline_s=float(deadline_s),
            cache_dir=cache_dir.strip(),
            user_name=user_name.strip(),
            ca_file=ca_file,
        )
        try:
            save_settings(self.value, self.path)
        except OSError as exc:
            self.notices.error(exc, "Saving settings: ")
            return False
        self.changed.emit()
        self.saved.emit()
        self.notices.show(
            NoticeKind.INFO,
            f"Settings saved to {self.path}.",
            "A new kernel cache folder is used from the next start.",
        )
        return True

    def update(self, **values: Any) -> None:
        """Change and persist some settings from elsewhere (e.g. sign-in in the Connection view)."""
        self.value = dataclasses.replace(self.value, **values)
        try:
            save_settings(self.value, self.path)
        except OSError as exc:
            self.notices.error(exc, "Saving settings: ")
        self.changed.emit()

    serviceUrl = Property(str, lambda self: self.value.service_url, notify=changed)
    token = Property(str, lambda self: self.value.token, notify=changed)
    addressInUse = Property(str, lambda self: self._in_use[0], notify=changed)
    tokenInUse = Property(str, lambda self: self._in_use[1], notify=changed)
    route = Property(str, lambda self: self.value.route, notify=changed)
    maxInputMib = Property(int, lambda self: self.value.max_input_mib, notify=changed)
    deadlineS = Property(float, lambda self: self.value.deadline_s, notify=changed)
    cacheDir = Property(str, lambda self: self.value.cache_dir, notify=changed)
    effectiveCacheDir = Property(
        str, lambda self: str(self.value.kernel_cache_dir()), notify=changed
    )
    userName = Property(str, lambda self: self.value.user_name, notify=changed)
    caFile = Property(str, lambda self: self.value.ca_file, notify=changed)
    filePath = Property(str, lambda self: str(self.path), constant=True)
    routes = Property(list, lambda self: [r.value for r in Route], constant=True)

"""Everything the window needs, wired together: controllers, the QML engine, the link, documents.

The shell owns one event loop's worth of objects (Qt's loop with asyncio on it via qasync):
the Socket, the Dispatcher and the DocumentStore are plain asyncio and run unchanged.

Start-up comes in three steps so the window draws first: load() (the window), start_kernels()
(the wasmtime runtime) and start() (the link and the documents). The modules behind the last two
(wasmtime, websockets, pycrdt) are imported where those steps begin, not here, and so are asyncio
and ssl (about 50 ms of imports, which app.py's main() keeps after the first frame).
"""

from __future__ import annotations

import contextlib
import getpass
import importlib.resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import shiboken6
from PySide6.QtCore import QObject, QUrl
from PySide6.QtGui import QImage
from PySide6.QtQml import QQmlApplicationEngine
from PySide6.QtQuick import QQuickWindow
from veraltheim.client.net.state import ConnectionState
from veraltheim.client.ui.connection import DISCONNECTED, Connection
from veraltheim.client.ui.images import PROVIDER_ID, PreviewImages
from veraltheim.client.ui.inspector import Inspector
from veraltheim.client.ui.jobs import Jobs
from veraltheim.client.ui.notes import NotesController
from veraltheim.client.ui.notices import NoticeKind, Notices
from veraltheim.client.ui.runs import Runs
from veraltheim.client.ui.settings import AppSettings
from veraltheim.client.ui.settings_view import SettingsController
from veraltheim.client.ui.views import VIEWS, View
from veraltheim.client.ui.workbench import Workbench

if TYPE_CHECKING:
    import asyncio
    import ssl

RUNS_DOC = "runs"
NOTES_DOC = "notes"


def qml_dir() -> Path:
    return Path(str(importlib.resources.files("veraltheim.resources") / "qml"))


class Shell(QObject):
    def __init__(
        self,
        settings: AppSettings,
        settings_path: Path | None = None,
        *,
        runtime: Any = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.notices = Notices(self)
        self.images = PreviewImages()
        self.settings = SettingsController(settings, self.notices, settings_path, self)
        self.connection = Connection(self.notices, self)
        self.runs = Runs(self.notices, self)
        self.notes = NotesController(self.notices, self)
        self.inspector = Inspector(self)
        self.startup_error: Exception | None = None
        self.runtime = runtime  # start_kernels() makes one if none is given
        self.jobs = Jobs(None)  # a dispatcher once the kernels start, local until a link
        self.workbench = Workbench(
            self.runtime,
            self.jobs,
            self.notices,
            self.images,
            lambda: self.settings.value,
            self.user_name,
            self,
        )
        self.workbench.listeners += [self.runs.record, self.inspector.record]
        self.connection.reconnectRequested.connect(self._on_reconnect_requested)
        self.connection.changed.connect(lambda: self.notes.set_me(self.connection.user))
        self.connection.stateChanged.connect(self._show_document_status)
        self.settings.saved.connect(self._on_settings_saved)
        self.engine: QQmlApplicationEngine | None = None
        self._window: QQuickWindow | None = None
        self.socket: Any = None
        self.store: Any = None
        self.docs: dict[str, Any] = {}
        self.dispatcher_available = False  # remote runs possible (compute package + a socket)
        self._link_lock: asyncio.Lock | None = None  # made by the first set_link()
        self._link: tuple[str, str] = ("", "")  # the address and token in use
        self.inspector.state_lines = self._cost_model_lines
        self.inspector.cache_paths = {
            "Kernel code cache": settings.kernel_cache_dir(),
            "Document cache": settings.document_cache_path(),
            "Settings": self.settings.path,
        }

    def start_kernels(self) -> None:
        """Start the kernel runtime and fill the Workbench's catalogue; if the runtime cannot
        start, the window stays and says why."""
        if self.runtime is None and self.startup_error is None:
            settings = self.settings.value
            try:
                from veraltheim.wasm.runtime import Runtime

                self.runtime = Runtime(
                    cache_dir=settings.kernel_cache_dir(), default_deadline_s=settings.deadline_s
                )
            except Exception as exc:
                self.startup_error = exc
        self.workbench.runtime = self.runtime
        self._use_dispatcher(self.socket)
        if self.startup_error is not None:
            self.notices.show(
                NoticeKind.ERROR,
                f"Kernels are not available: {self.startup_error}",
                "Reinstall Veraltheim or rebuild the kernels (make wasm); shared runs and notes "
                "still work.",
            )
            return
        try:
            self.workbench.load_catalogue()
        except Exception as exc:
            self.notices.error(exc, "Loading the kernel catalogue: ")
        self._watch_user_kernels()

    def user_name(self) -> str:
        if self.connection.user:
            return self.connection.user
        if self.settings.value.user_name:
            return self.settings.value.user_name
        try:
            return getpass.getuser()
        except Exception:
            return "me"

    # --- the window ------------------------------------------------------------------------

    def load(self, view: View | str = View.WORKBENCH) -> QQuickWindow:
        """The window, showing `view`: only that view is built before the first frame."""
        engine = QQmlApplicationEngine()
        engine.addImageProvider(PROVIDER_ID, self.images)
        # Main.qml's required properties: the bridge objects (QML types of the Veraltheim
        # module, client/ui/qml.py) and the view names; the views get theirs from it. Then the
        # view to show, set before the views are made so no other one is built first.
        engine.setInitialProperties(
            {
                "notices": self.notices,
                "settings": self.settings,
                "connection": self.connection,
                "workbench": self.workbench,
                "runs": self.runs,
                "notes": self.notes,
                "inspector": self.inspector,
                "viewNames": [v.value for v in VIEWS],
                "currentView": VIEWS.index(View(view)),
            }
        )
        warnings: list[str] = []
        engine.warnings.connect(lambda ws: warnings.extend(w.toString() for w in ws))
        engine.load(QUrl.fromLocalFile(str(qml_dir() / "Main.qml")))
        if not engine.rootObjects():
            raise RuntimeError("the window could not be loaded:\n" + "\n".join(warnings))
        self.engine = engine
        self._window = engine.rootObjects()[0]
        self.qml_warnings = warnings
        self.inspector.refreshCache()
        return self.window

    def _watch_user_kernels(self) -> None:
        path = getattr(self.runtime, "user_manifest_path", None)
        if path is None:
            return
        from veraltheim.client.ui.kernel_watch import KernelWatcher

        self.kernel_watcher = KernelWatcher(
            path.parent, self.runtime.reload_user_kernels, self._user_kernels_changed, self
        )
        self.workbench.refresher = self.kernel_watcher.check

    def _user_kernels_changed(self) -> None:
        if self.jobs.dispatcher is not None:
            self.jobs.dispatcher.sync_local_kernels()
        self.workbench.load_catalogue()

    @property
    def window(self) -> QQuickWindow:
        # One wrapper kept for the window's life: shiboken invalidates the wrappers of child
        # items handed out through a temporary window wrapper once that one is collected.
        assert self._window is not None, "load() first"
        return self._window

    def show_view(self, view: View | str) -> None:
        self.window.setProperty("currentView", VIEWS.index(View(view)))

    def grab(self) -> QImage:
        return self.window.grabWindow()

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not self.grab().save(str(path)):
            raise OSError(f"could not write {path}")
        return path

    # --- the link and the shared documents --------------------------------------------------

    async def start(self, service_url: str | None = None, token: str | None = None) -> None:
        """Open the local document cache, then connect when an address is set."""
        url = self.settings.value.service_url if service_url is None else service_url
        tok = self.settings.value.token if token is None else token
        await self.set_link(url, tok)

    def _on_settings_saved(self) -> None:
        """A new address or token applies at once: connect again with it."""
        value = self.settings.value
        self.workbench.setWhere(value.route)
        if (value.service_url, value.token) != self._link or value.service_url.startswith("wss"):
            self.notices.spawn(self.set_link(value.service_url, value.token), "Connecting: ")

    def _on_reconnect_requested(self, address: str, token: str) -> None:
        if address:
            self.settings.update(service_url=address, token=token)
        self.notices.spawn(self.set_link(address, token), "Connecting: ")

    async def set_link(self, url: str, token: str) -> None:
        if self._link_lock is None:
            import asyncio

            self._link_lock = asyncio.Lock()
        async with self._link_lock:
            self._link = (url, token)
            self.settings.set_in_use(url, token)
            await self._drop_link()
            socket = None
            if url:
                socket = self._make_socket(url, token)
            self._use_dispatcher(socket)
            await self._open_documents(socket)
            if socket is not None:
                self.socket = socket
                self.connection.attach(socket, url)
                await socket.connect()

    def _make_socket(self, url: str, token: str) -> Any:
        from veraltheim.client.net.socket import Socket

        # the name a service without auth shows; with auth the token's user wins
        params = {"user": self.settings.value.user_name or self.user_name()}
        socket = Socket(url, params=params, token=(lambda: token or None), ssl=self._tls(url))
        socket.on_frame(self.inspector.on_frame)
        return socket

    def _tls(self, url: str) -> ssl.SSLContext | None:
        """For wss://: the system's trust store, plus the certificate chosen in Settings."""
        if not url.startswith("wss://"):
            return None
        import ssl

        ca_file = self.settings.value.ca_file or None
        try:
            return ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            self.notices.show(
                NoticeKind.ERROR,
                f"The trusted certificate {ca_file} cannot be used: {exc}.",
                "Fix the file in Settings; until then only certificates the system trusts work.",
            )
            return ssl.create_default_context()

    def _use_dispatcher(self, socket: Any) -> None:
        """Jobs run through a dispatcher on the runtime and this socket (None: local only)."""
        if self.runtime is None:
            self.jobs.dispatcher = None
        else:
            from veraltheim.client.compute.dispatcher import Dispatcher

            # a new link keeps what was learned about local speeds
            old = self.jobs.dispatcher
            model = old.model if old is not None else None
            self.jobs.dispatcher = Dispatcher(self.runtime, socket, model=model)
        self.dispatcher_available = self.jobs.dispatcher is not None and socket is not None

    async def _open_documents(self, socket: Any) -> None:
        from veraltheim.client.state.notes import Notes
        from veraltheim.client.state.run_history import RunHistory
        from veraltheim.client.state.store import DocumentStore

        path = self.settings.value.document_cache_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.store = DocumentStore(path, socket)
        status = document_status(self.connection.state if socket is not None else "")
        runs_doc = await self.store.open(RUNS_DOC)
        notes_doc = await self.store.open(NOTES_DOC)
        self.docs = {RUNS_DOC: runs_doc, NOTES_DOC: notes_doc}
        self.runs.attach(RunHistory(runs_doc), status)
        self.notes.attach(Notes(notes_doc), notes_doc, self.user_name(), status)

    async def _drop_link(self) -> None:
        socket, store = self.socket, self.store
        self.socket = self.store = None
        self.docs = {}
        self.connection.detach()
        if store is not None:
            with contextlib.suppress(Exception):
                await store.aclose()
        if socket is not None:
            with contextlib.suppress(Exception):
                await socket.disconnect()

    def _cost_model_lines(self) -> list[str]:
        """What the dispatcher has learned, for the Inspector."""
        dispatcher = self.jobs.dispatcher
        if dispatcher is None:
            return []
        model = dispatcher.model
        load = model.load
        lines = [
            "Dispatcher cost model:",
            f"  link: round trip {model.rtt_ms:,.1f} ms ({model.rtt_samples} samples), "
            f"bandwidth {model.bandwidth_bps / 1e6:,.1f} MB/s ({model.bandwidth_samples} samples)",
            f"  service: {load.workers} workers, {load.busy} busy, {load.queue_depth} queued",
        ]
        for name, k in sorted(model.kernels.items()):
            if not (k.local_runs or k.remote_runs):
                continue
            remote = f"{k.remote_ns:,.2f}" if k.remote_ns is not None else "?"
            lines.append(
                f"  {name}: local {k.local_ns:,.2f} ns/{k.unit} ({k.local_runs} runs), "
                f"remote {remote} ns/{k.unit} ({k.remote_runs} runs)"
            )
        return lines

    def _show_document_status(self, state: str) -> None:
        if self.store is not None:
            status = document_status(state)
            self.runs.set_status(status)
            self.notes.set_status(status)

    # --- shutdown ----------------------------------------------------------------------------

    async def stop(self) -> None:
        self.workbench.cancel()
        await self.notices.cancel_all()
        await self._drop_link()

    def close_window(self) -> None:
        """Delete the QML engine before the context objects (no null-property warnings at exit)."""
        engine, self.engine = self.engine, None
        self._window = None
        if engine is not None:
            for obj in engine.rootObjects():
                obj.close()
            shiboken6.delete(engine)  # now, not deleteLater: the controllers may go first


def document_status(connection_state: str) -> str:
    """What the Runs and Notes headers say about where their content comes from."""
    if connection_state == ConnectionState.CONNECTED:
        return "live"
    if not connection_state or connection_state == DISCONNECTED:
        return "local copy (not connected)"
    return f"local copy ({connection_state}; changes are sent when the service is back)"

"""The Workbench: pick a kernel, fill its parameter form, give it input, run it, see the result."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Property, QObject, QUrl, Signal, Slot
from PySide6.QtGui import QImage
from veraltheim.client.compute.routes import Route
from veraltheim.client.state.run_record import (
    TOTAL_MS,
    RunRecord,
    RunStatus,
    RunSummary,
    estimate_key,
)
from veraltheim.client.ui.images import PreviewImages, rgba_to_qimage
from veraltheim.client.ui.inputs import InputError, KernelInput, file_filters, load_input
from veraltheim.client.ui.jobs import JobOutcome, Jobs
from veraltheim.client.ui.models import DictListModel
from veraltheim.client.ui.notices import NoticeKind, Notices
from veraltheim.client.ui.outputs import KernelOutput, describe_output, save_output
from veraltheim.client.ui.qml import qml_type
from veraltheim.client.ui.settings import AppSettings

if TYPE_CHECKING:
    import asyncio

PROGRESS_STEP = 0.01  # post progress to the UI only when it moved by 1% ...
PROGRESS_MIN_INTERVAL_S = 0.05  # ... and at most 20 times a second
INPUT_PARAMS = ("width", "height")  # set from the picked image, not typed
FIRST_KERNEL = "fractal.mandelbrot"  # needs no input file: Ctrl+R shows something at once
PARAM_ROLES = ["name", "type", "min", "max", "value", "choices", "description", "fromInput"]


@qml_type
class Workbench(QObject):
    kernelChanged = Signal()
    inputChanged = Signal()
    runningChanged = Signal()
    progressChanged = Signal()
    resultChanged = Signal()
    whereChanged = Signal()
    loadingChanged = Signal()
    finished = Signal(str)  # "ok", "cancelled", "error"
    inputLoadEnded = Signal(str)  # "ok", "error", or "stale" (a newer pick replaced it)

    def __init__(
        self,
        runtime: Any,
        jobs: Jobs,
        notices: Notices,
        images: PreviewImages,
        settings: Callable[[], AppSettings],
        user: Callable[[], str],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.runtime = runtime
        self.jobs = jobs
        self.notices = notices
        self.images = images
        self.settings = settings
        self.user = user
        self.listeners: list[Callable[[RunRecord], None]] = []  # told about every finished run
        self._kernels = DictListModel(["name", "description", "inputKind", "outputKind"], self)
        self._params = DictListModel(PARAM_ROLES, self)
        self._spec: Any = None
        self._input: KernelInput | None = None
        self._input_url = ""
        # Reads files on a worker thread (tests swap in a loader they control)
        self.input_reader: Callable[..., KernelInput] = load_input
        self._load_seq = 0  # bumped by each pick: a finished load with an older number is stale
        self._loading_name = ""
        self._where = Route(settings().route)
        self._running = False
        self._progress = 0.0
        self._status = ""
        self._result: KernelOutput | None = None
        self._result_url = ""
        self._result_info = ""
        self._cancel: Any = None
        self._task: asyncio.Task | None = None
        self.last_outcome: JobOutcome | None = None
        self.refresher: Callable[[], bool] | None = None  # re-reads installed user kernels

    @Slot()
    def refreshKernels(self) -> None:
        if self.refresher is not None:
            self.refresher()

    # --- the catalogue and the form -------------------------------------------------------

    def load_catalogue(self) -> None:
        specs = sorted(self.runtime.catalogue(), key=lambda s: s.name)
        self._kernels.reset(
            {
                "name": s.name,
                "description": s.description,
                "inputKind": s.input_kind,
                "outputKind": s.output_kind,
            }
            for s in specs
        )
        names = [s.name for s in specs]
        if self._spec is not None and self._spec.name not in names and not self._running:
            self._spec = None  # uninstalled
        if specs and self._spec is None:
            self.selectKernel(FIRST_KERNEL if FIRST_KERNEL in names else names[0])

    @Slot(str)
    def selectKernel(self, name: str) -> None:
        if self._running or (self._spec is not None and self._spec.name == name):
            return
        try:
            spec = self.runtime.spec(name)
        except Exception as exc:
            self.notices.error(exc)
            return
        keep_input = (
            self._input is not None
            and self._spec is not None
            and (self._spec.input_kind == spec.input_kind)
        )
        self._spec = spec
        rows = []
        for p in spec.params:
            value = p.default
            if p.type == "enum" and value is None and p.choices:
                value = p.choices[0]
            if value is None and p.type != "enum":
                value = p.min if p.min is not None else 0
            rows.append(
                {
                    "name": p.name,
                    "type": p.type,
                    "min": _qml_number(p.min, -1e300),
                    "max": _qml_number(p.max, 1e300),
                    "value": value,
                    "choices": list(p.choices or []),
                    "description": p.description or "",
                    "fromInput": spec.input_kind == "rgba8" and p.name in INPUT_PARAMS,
                }
            )
        self._params.reset(rows)
        if not keep_input:
            self._forget_pending_load()  # it was read for the previous kernel's input kind
            self._set_input(None, "")
        else:
            self._apply_input_params()
        self.kernelChanged.emit()

    @Slot(str, "QVariant")
    def setParam(self, name: str, value: Any) -> None:
        for i, row in enumerate(self._params.rows):
            if row["name"] == name:
                try:
                    if row["type"] == "int":
                        value = round(float(value))
                    elif row["type"] == "float":
                        value = float(value)
                except (TypeError, ValueError, OverflowError):
                    self.notices.show(
                        NoticeKind.ERROR,
                        f"{name}: {value!r} is not a number.",
                        "Type a number in range.",
                    )
                    return
                if row["value"] != value:
                    self._params.set_row(i, {**row, "value": value})
                    if name == "dtype" and self._input is not None and self._input.path:
                        self._load(self._input.path)  # the same file read as the new type
                return

    def params(self) -> dict[str, Any]:
        return {row["name"]: row["value"] for row in self._params.rows}

    # --- input ------------------------------------------------------------------------------

    @Slot("QVariant")
    def openFile(self, url: Any) -> None:
        """The user picked a file (open dialog or drop): the only way a file reaches a kernel."""
        if self._running:
            self.notices.show(
                NoticeKind.WARNING, "A job is running.", "Wait for it or cancel it (Esc)."
            )
            return
        path = _local_path(url)
        if path is None:
            self.notices.show(
                NoticeKind.ERROR, f"{url} is not a local file.", "Pick a file on this computer."
            )
            return
        self._load(path)

    def _load(self, path: Path) -> None:
        """Read and decode `path` off the GUI thread; a large file must not freeze the window."""
        if self._spec is None:
            return
        self._load_seq += 1
        self._set_loading(path.name, f"Loading {path.name}...")
        self.notices.spawn(
            self._load_async(
                self._load_seq,
                path,
                self._spec.input_kind,
                str(self.params().get("dtype", "f64")),
                self.settings().max_input_mib * 2**20,
            ),
            f"{path.name}: ",
        )

    async def _load_async(
        self, seq: int, path: Path, input_kind: str, dtype: str, max_bytes: int
    ) -> None:
        import asyncio  # here: the window draws before asyncio is imported (app.py)

        try:
            loaded, image = await asyncio.to_thread(
                self._read_input, path, input_kind, dtype, max_bytes
            )
        except Exception as exc:  # InputError, or e.g. an OSError while reading
            if seq != self._load_seq:
                self.inputLoadEnded.emit("stale")
                return
            self._set_loading("", f"Could not open {path.name}.")
            self.notices.error(exc, "" if isinstance(exc, InputError) else f"{path.name}: ")
            self.inputLoadEnded.emit("error")
            return
        except asyncio.CancelledError:  # the window is closing
            if seq == self._load_seq:
                self._set_loading("", "")
            raise
        if seq != self._load_seq:
            self.inputLoadEnded.emit("stale")
            return
        url = self.images.put("input", image) if image is not None else ""
        self._set_input(loaded, url)
        self._set_loading("", f"Opened {path.name}.")
        self.notices.clear(NoticeKind.ERROR)
        self.inputLoadEnded.emit("ok")

    def _read_input(
        self, path: Path, input_kind: str, dtype: str, max_bytes: int
    ) -> tuple[KernelInput, QImage | None]:
        """On the worker thread: the file read, parsed and, for a picture, its preview image."""
        loaded = self.input_reader(path, input_kind, dtype=dtype, max_bytes=max_bytes)
        image = rgba_to_qimage(loaded.data, *loaded.image_size) if loaded.image_size else None
        return loaded, image

    def _forget_pending_load(self) -> None:
        if self._loading_name:
            self._load_seq += 1
            self._set_loading("", "")

    def _set_loading(self, name: str, status: str) -> None:
        self._loading_name = name
        self._status = status
        self.loadingChanged.emit()
        self.runningChanged.emit()  # (the status text's notify signal)

    @Slot()
    def useResultAsInput(self) -> None:
        """Feed the last image result into an image kernel (e.g. blur a rendered fractal)."""
        r = self._result
        if r is None or r.kind != "image" or self._spec is None or self._spec.input_kind != "rgba8":
            return
        w, h = r.image_size or (0, 0)
        loaded = KernelInput(
            r.raw, f"previous result: {w} x {h} image", {"width": w, "height": h}, (w, h)
        )
        self._set_input(loaded, self.images.put("input", rgba_to_qimage(r.raw, w, h)))

    def _set_input(self, loaded: KernelInput | None, url: str) -> None:
        self._input = loaded
        self._input_url = url
        self._apply_input_params()
        self.inputChanged.emit()

    def _apply_input_params(self) -> None:
        if self._input is None:
            return
        for name, value in self._input.params.items():
            self.setParam(name, value)
            self.setParam(f"out_{name}", value)  # e.g. a resize starts at the input's size

    # --- running ------------------------------------------------------------------------------

    @Slot()
    def run(self) -> None:
        # (a run spawned but not started yet counts too: Ctrl+R twice must not start two)
        if self._running or (self._task is not None and not self._task.done()):
            return
        if self._spec is None:
            self.notices.show(
                NoticeKind.ERROR, "No kernel is selected.", "Pick one in the Kernel list."
            )
            return
        if self._loading_name:
            self.notices.show(
                NoticeKind.WARNING,
                f"{self._loading_name} is still loading.",
                "Run again once it shows as the input.",
            )
            return
        if self.needsInput and self._input is None:
            self.notices.show(
                NoticeKind.ERROR,
                f"{self._spec.name} needs an input file.",
                "Open one, or drop it on the Workbench, then run again.",
            )
            return
        self._task = self.notices.spawn(self._run(), f"{self._spec.name}: ")

    async def _run(self) -> None:
        from veraltheim.wasm import Cancelled, CancelToken

        spec = self._spec
        data = self._input.data if self._input is not None else b""
        params = self.params()
        try:
            params = self.runtime.validate(spec.name, data, params)
        except Exception as exc:
            self.notices.error(exc, f"{spec.name}: ")
            self.finished.emit("error")
            return
        self._cancel = CancelToken()
        self._set_running(True, f"Running {spec.name}...")
        self.notices.clear()
        started = time.time()
        try:
            outcome = await self.jobs.run(
                spec.name,
                data,
                params,
                where=self._where,
                progress=self._progress_reporter(),
                cancel=self._cancel,
                deadline_s=self.settings().deadline_s,
            )
        except Cancelled:
            self._set_running(False, "Cancelled.")
            self.notices.show(NoticeKind.INFO, f"{spec.name} was cancelled.", "")
            self.finished.emit("cancelled")
            return
        except Exception as exc:
            self._set_running(False, "Failed.")
            self.notices.error(exc, f"{spec.name}: ")
            self.finished.emit("error")
            return
        finally:
            self._cancel = None
        self.last_outcome = outcome
        self._show_result(spec, params, outcome)
        self._set_running(False, "Done.")
        run = RunRecord(
            kernel=spec.name,
            user=self.user(),
            where=outcome.where,
            size=len(data),
            status=RunStatus.DONE,
            timings={
                TOTAL_MS: round(outcome.elapsed_ms, 3),
                **{estimate_key(k): round(v, 3) for k, v in outcome.estimates_ms.items()},
                **{  # the service's own timings of the job, kept apart from ours
                    f"service_{k}": float(v)
                    for k, v in (outcome.remote.get("timings") or {}).items()
                    if isinstance(v, int | float)
                },
            },
            summary=RunSummary(
                reason=outcome.reason,
                fallback=outcome.fallback,
                input=self._input.summary if self._input else "generated",
                output_bytes=len(outcome.output),
                params={k: v for k, v in params.items() if isinstance(v, int | float | str)},
                at=started,
            ),
        )
        for listener in list(self.listeners):
            try:
                listener(run)
            except Exception as exc:
                self.notices.error(exc, "Recording the run: ")
        self.finished.emit("ok")

    def _show_result(self, spec: Any, params: dict[str, Any], outcome: JobOutcome) -> None:
        result = describe_output(spec, params, outcome.output)
        self._result = result
        self._result_url = (
            self.images.put("result", rgba_to_qimage(result.raw, *result.image_size))
            if result.kind == "image" and result.image_size
            else ""
        )
        why = f" ({outcome.reason})" if outcome.reason else ""
        place = "on the service" if outcome.where == Route.REMOTE else "locally"
        self._result_info = f"Ran {place} in {outcome.elapsed_ms:,.1f} ms{why}"
        self.resultChanged.emit()

    def _progress_reporter(self) -> Callable[[int, int], None]:
        """A progress callback safe on the worker thread: posts to the loop, throttled."""
        import asyncio

        loop = asyncio.get_running_loop()
        main = threading.get_ident()
        last = [0.0, 0.0]  # fraction, time

        def report(done: int, total: int) -> None:
            fraction = min(1.0, done / total) if total else 0.0
            now = time.monotonic()
            if fraction < 1.0 and (
                fraction - last[0] < PROGRESS_STEP or now - last[1] < PROGRESS_MIN_INTERVAL_S
            ):
                return
            last[0], last[1] = fraction, now
            if threading.get_ident() == main:
                self._set_progress(fraction)
            else:
                loop.call_soon_threadsafe(self._set_progress, fraction)

        return report

    def _set_progress(self, fraction: float) -> None:
        if self._running:
            self._progress = fraction
            self.progressChanged.emit()

    def _set_running(self, running: bool, status: str) -> None:
        self._running = running
        self._status = status
        self._progress = 0.0
        self.runningChanged.emit()
        self.progressChanged.emit()

    @Slot()
    def cancel(self) -> None:
        if self._cancel is not None:
            self._status = "Cancelling..."
            self.runningChanged.emit()
            self._cancel.cancel()

    @Slot("QVariant")
    def saveResult(self, url: Any) -> None:
        path = _local_path(url)
        if self._result is None or path is None:
            return
        if not path.suffix:
            path = path.with_suffix(self._result.suggested_suffix)
        try:
            written = save_output(self._result, path)
        except Exception as exc:
            self.notices.error(exc, f"Saving {path.name}: ")
            return
        self.notices.show(NoticeKind.INFO, f"Saved {written}.", "")

    @Slot(str)
    def setWhere(self, where: str) -> None:
        if where in set(Route) and where != self._where:
            self._where = Route(where)
            self.whereChanged.emit()

    # --- properties for QML -----------------------------------------------------------------

    def _kernel_name(self) -> str:
        return self._spec.name if self._spec else ""

    def _needs_input(self) -> bool:
        return self._spec is not None and self._spec.input_kind != "none"

    def _input_filters(self) -> list[str]:
        return file_filters(self._spec.input_kind) if self._spec else []

    kernels = Property(DictListModel, lambda self: self._kernels, constant=True)
    paramModel = Property(DictListModel, lambda self: self._params, constant=True)
    kernel = Property(str, _kernel_name, notify=kernelChanged)
    kernelDescription = Property(
        str, lambda self: self._spec.description if self._spec else "", notify=kernelChanged
    )
    inputKind = Property(
        str, lambda self: self._spec.input_kind if self._spec else "", notify=kernelChanged
    )
    needsInput = Property(bool, _needs_input, notify=kernelChanged)
    inputFilters = Property(list, _input_filters, notify=kernelChanged)
    inputSummary = Property(
        str, lambda self: self._input.summary if self._input else "", notify=inputChanged
    )
    inputImage = Property(str, lambda self: self._input_url, notify=inputChanged)
    where = Property(str, lambda self: self._where, notify=whereChanged)
    # the Where choices: [{name: "auto", label: "Auto"}, ...]
    routes = Property(
        list, lambda self: [{"name": r.value, "label": r.label} for r in Route], constant=True
    )
    loading = Property(bool, lambda self: bool(self._loading_name), notify=loadingChanged)
    loadingInput = Property(str, lambda self: self._loading_name, notify=loadingChanged)
    running = Property(bool, lambda self: self._running, notify=runningChanged)
    status = Property(str, lambda self: self._status, notify=runningChanged)
    progress = Property(float, lambda self: self._progress, notify=progressChanged)
    resultKind = Property(
        str, lambda self: self._result.kind if self._result else "", notify=resultChanged
    )
    resultText = Property(
        str, lambda self: self._result.text if self._result else "", notify=resultChanged
    )
    resultImage = Property(str, lambda self: self._result_url, notify=resultChanged)
    resultInfo = Property(str, lambda self: self._result_info, notify=resultChanged)
    resultSuffix = Property(
        str,
        lambda self: self._result.suggested_suffix if self._result else "",
        notify=resultChanged,
    )


def _qml_number(value: Any, fallback: float) -> float:
    return float(value) if value is not None else fallback


def _local_path(url: Any) -> Path | None:
    if isinstance(url, QUrl):
        return Path(url.toLocalFile()) if url.isLocalFile() else None
    text = str(url)
    if text.startswith("file:"):
        q = QUrl(text)
        return Path(q.toLocalFile()) if q.isLocalFile() else None
    return Path(text) if text else None

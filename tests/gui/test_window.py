"""The window as a whole: views, settings kept between runs, keyboard and accessible names,
the `veraltheim --screenshot` path."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import Qt
from veraltheim.client.ui.settings import load_settings
from veraltheim.client.ui.shell import qml_dir
from veraltheim.client.ui.views import VIEWS, View
from veraltheim.client.ui.waiting import wait_until

from tests.gui.conftest import click, find_item, item, key, save_artifact

CONTROLS = (
    "Button",
    "TabButton",
    "TextField",
    "ComboBox",
    "SpinBox",
    "RadioButton",
    "CheckBox",
    "TextArea",
)
CTRL = Qt.KeyboardModifier.ControlModifier


def control_blocks(text: str):
    """(control type, its block's own lines) for every control instantiated in a QML file."""
    for match in re.finditer(r"^(\s*)(" + "|".join(CONTROLS) + r")\s*\{", text, re.M):
        depth, i = 0, match.end() - 1
        while True:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
            if depth == 0:
                break
        block = text[match.end() : i - 1]
        # only the block's own properties, not those of nested items
        own = re.sub(r"\{[^{}]*\}", "", re.sub(r"\{[^{}]*\}", "", block))
        yield match.group(2), own


def test_every_control_has_an_accessible_name_and_an_object_name():
    missing = []
    count = 0
    for qml in sorted(qml_dir().glob("*.qml")):
        for kind, own in control_blocks(qml.read_text()):
            count += 1
            for needed in ("objectName:", "Accessible.name:"):
                if needed not in own:
                    missing.append(f"{qml.name}: a {kind} without {needed}")
    assert count > 30
    assert missing == []


def test_the_checker_catches_a_control_without_names():
    bad = "Item {\n    Button {\n        text: 'x'\n        Row { objectName: 'inner' }\n    }\n}\n"
    ((kind, own),) = control_blocks(bad)
    assert kind == "Button" and "objectName:" not in own


def test_start_up_builds_the_view_on_screen_and_the_others_when_first_shown(make_shell, run):
    shell = make_shell()
    assert find_item(shell, "workbenchView") is not None
    assert find_item(shell, "settingsView") is None  # not built: the first frame does not wait
    shell.show_view(View.SETTINGS)
    assert item(shell, "settingsView").isVisible()
    item(shell, "settingsUserName").setProperty("text", "typed, not saved")
    shell.show_view(View.WORKBENCH)
    shell.show_view(View.SETTINGS)  # kept, not rebuilt: what was typed is still there
    assert item(shell, "settingsUserName").property("text") == "typed, not saved"


def test_start_up_on_another_view_builds_that_view_only(app_dirs, run):
    from veraltheim.client.ui.shell import Shell

    shell = Shell(load_settings()[0])
    try:
        shell.load(View.NOTES)  # `veraltheim --view notes`
        assert item(shell, "notesView").isVisible()
        assert find_item(shell, "workbenchView") is None  # not built on the way there
        assert item(shell, "navNotes").property("checked")
    finally:
        run(shell.stop())
        shell.close_window()


def test_the_window_opens_before_the_kernels_start_and_fills_in_after(app_dirs, run):
    from veraltheim.client.ui.shell import Shell

    settings, _ = load_settings()
    shell = Shell(settings)
    try:
        shell.load()
        assert shell.runtime is None and shell.workbench.kernels.rows == []
        shell.workbench.run()  # Ctrl+R before the kernels are up: said, not a crash
        assert "No kernel is selected" in shell.notices.text
        shell.start_kernels()
        names = [r["name"] for r in shell.workbench.kernels.rows]
        assert "fractal.mandelbrot" in names and shell.workbench.kernel == "fractal.mandelbrot"
        assert shell.jobs.dispatcher is not None
    finally:
        run(shell.stop())
        shell.close_window()


def test_the_first_frame_imports_neither_wasmtime_nor_the_link_nor_the_documents():
    """What the window needs before it draws, and no more: the kernel runtime, websockets,
    pycrdt and numpy load after the first frame (bench/ui.py, first_frame_ms)."""
    heavy = ["wasmtime", "websockets", "pycrdt", "numpy", "veraltheim.wasm.runtime"]
    # and what only the link or a finished run needs (5 to 11 ms each)
    heavy += ["veraltheim.protocol.channel_client", "statistics", "uuid"]
    code = (
        "import sys, veraltheim.client.ui.app, veraltheim.client.ui.shell, qasync;"
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_the_window_draws_before_asyncio_qasync_and_qts_enum_namespace(app_dirs, tmp_path):
    """main() shows the first frame on Qt's own loop: asyncio (about 50 ms of imports), qasync,
    and the ~100 enums of Qt's `Qt` namespace that its first timer builds, come after it
    (bench/ui.py, first_frame_ms)."""
    code = """
import enum, sys
built = []
create = enum.EnumType._create_
def spy(cls, name, *args, **kwargs):
    built.append(name)
    return create(cls, name, *args, **kwargs)
enum.EnumType._create_ = spy
from veraltheim.client.ui import app
seen = {}
run_in_app, run_window = app.run_in_app, app.run_window
def spy_run_in_app(make_coro, qapp=None):
    seen["qasync"], seen["qt_enums"] = "qasync" in sys.modules, "AlignmentFlag" in built
    seen["asyncio"] = "asyncio" in sys.modules
    return run_in_app(make_coro, qapp)
async def spy_run_window(args, opened=None, stop_signals=None):
    seen["drawn"] = opened.first_frame_at is not None
    return await run_window(args, opened, stop_signals)
app.run_in_app, app.run_window = spy_run_in_app, spy_run_window
rc = app.main(["--offscreen", "--local-only", "--screenshot", sys.argv[1]])
print(rc, seen["drawn"], seen["qasync"], seen["qt_enums"], seen["asyncio"])
"""
    shot = tmp_path / "first.png"
    out = subprocess.run(
        [sys.executable, "-c", code, str(shot)], capture_output=True, text=True, timeout=60
    )
    last = out.stdout.splitlines()[-1].split()
    assert last == ["0", "True", "False", "False", "False"], out.stdout
    assert shot.is_file()


STOP_DURING_START_UP = """
import os, signal, sys
from veraltheim.client.ui import app
when = sys.argv[1]
open_window = app.open_window
def interrupted(args):
    if when == "before the window":
        os.kill(os.getpid(), signal.SIGINT)
    opened = open_window(args)
    if when == "while it first draws":  # inside Qt's own loop, before asyncio's runs
        sent = []
        def on_frame():
            if not sent:
                sent.append(True)
                os.kill(os.getpid(), signal.SIGTERM)
        opened.window.frameSwapped.connect(on_frame)
    if when == "and the window closed":
        os.kill(os.getpid(), signal.SIGINT)
        opened.window.close()
    return opened
app.open_window = interrupted
def own(signum, frame):  # this process's own handler, which main() must put back
    pass
signal.signal(signal.SIGTERM, own)
rc = app.main(["--offscreen", "--service", sys.argv[2]])
print(
    rc,
    signal.getsignal(signal.SIGINT) is signal.default_int_handler,
    signal.getsignal(signal.SIGTERM) is own,
)
"""


@pytest.mark.parametrize(
    "when", ["before the window", "while it first draws", "and the window closed"]
)
def test_a_stop_signal_during_start_up_ends_the_app_before_anything_starts(app_dirs, when):
    """Before asyncio's loop takes the signals over, Qt's own loop draws the window: a Ctrl+C
    or SIGTERM then is kept, not lost in a Qt callback, and ends the app (exit 0, no trace)
    before the kernels and the link start; the signal handlers are as before main()."""
    with socket.create_server(("127.0.0.1", 0)) as service:
        url = f"ws://127.0.0.1:{service.getsockname()[1]}/socket/websocket"
        out = subprocess.run(
            [sys.executable, "-c", STOP_DURING_START_UP, when, url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.stdout.split() == ["0", "True", "True"], out.stdout + out.stderr
        assert "Traceback" not in out.stderr, out.stderr
        service.setblocking(False)
        with pytest.raises(BlockingIOError):
            service.accept()  # nobody came: the link never started


def test_a_window_closed_before_the_loop_started_ends_the_app(app_dirs, run):
    from veraltheim.client.ui.app import open_window, parse_args, run_window

    args = parse_args(["--local-only"])
    opened = open_window(args)
    opened.window.close()
    assert run(run_window(args, opened), 30) == 0


def test_ctrl_digits_switch_views_and_each_view_renders(make_shell, run):
    shell = make_shell()

    async def scenario():
        await shell.set_link("", "")
        for i, view in enumerate(VIEWS, 1):
            await key(shell, getattr(Qt.Key, f"Key_{i}"), CTRL)
            assert shell.window.property("currentView") == i - 1
            assert item(shell, f"{view.lower()}View").isVisible()
            image = shell.grab()
            assert image.width() == shell.window.width()
            # not a blank frame: the view drew text and controls
            colours = {
                image.pixel(x, y)
                for x in range(0, image.width(), 37)
                for y in range(0, image.height(), 23)
            }
            assert len(colours) > 3, view
            save_artifact(shell, f"offline-{i}-{view.lower()}")

    run(scenario())


def test_settings_are_saved_and_used_at_the_next_start(make_shell, run, app_dirs):
    shell = make_shell()

    async def scenario():
        await shell.set_link("", "")
        shell.show_view(View.SETTINGS)
        item(shell, "settingsServiceUrl").setProperty("text", "ws://127.0.0.1:9/socket/websocket")
        item(shell, "settingsUserName").setProperty("text", "frida")
        item(shell, "settingsMaxInput").setProperty("value", 3)
        await click(shell, "settingsSave")
        assert "Settings saved" in item(shell, "messageText").property("text")
        # the new address is used at once
        await wait_until(
            lambda: shell.connection.address == "ws://127.0.0.1:9/socket/websocket",
            [shell.connection.changed],
            10,
            "the new address",
        )
        # a bad address is refused with a message, and nothing is overwritten
        item(shell, "settingsServiceUrl").setProperty("text", "localhost:4000")
        await click(shell, "settingsSave")
        assert "is not a service address" in item(shell, "messageText").property("text")
        save_artifact(shell, "settings-bad-address")

    run(scenario())
    saved = json.loads((app_dirs / "config" / "settings.json").read_text())
    assert saved["service_url"] == "ws://127.0.0.1:9/socket/websocket"
    settings, problem = load_settings()
    assert problem is None
    assert (settings.user_name, settings.max_input_mib) == ("frida", 3)
    # the next window starts with them
    again = make_shell("frida")
    again.show_view(View.SETTINGS)
    assert item(again, "settingsServiceUrl").property("text") == settings.service_url
    assert item(again, "settingsMaxInput").property("value") == 3


def test_a_damaged_settings_file_falls_back_to_defaults_and_says_so(app_dirs):
    path = app_dirs / "config" / "settings.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    settings, problem = load_settings()
    assert settings.route == "auto"
    assert problem is not None and "could not be read" in problem
    assert path.read_text() == "{not json"  # left for the user to look at


def test_veraltheim_screenshot_writes_the_first_frame(app_dirs, tmp_path):
    out = tmp_path / "first.png"

    from veraltheim.client.ui.settings import CONFIG_DIR_ENV, DATA_DIR_ENV

    env_keys = (CONFIG_DIR_ENV, DATA_DIR_ENV, "QT_QPA_PLATFORM", "PATH", "HOME")

    env = {k: os.environ[k] for k in env_keys if k in os.environ}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "veraltheim.client.ui.app",
            "--offscreen",
            "--local-only",
            "--screenshot",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr
    with Image.open(out) as image:
        assert image.size == (1100, 720)
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 10


@pytest.mark.skipif(not shutil.which("xvfb-run"), reason="xvfb-run is not installed")
def test_in_a_real_x_window_the_first_frame_is_taken_once_and_quietly(app_dirs, tmp_path):
    """Under X (xcb) Qt draws on its render thread and frames can be on their way when the
    first-frame handler lets go of the signal: no warning, a drawn window."""
    out = tmp_path / "window.png"
    env = {k: v for k, v in os.environ.items() if not k.startswith("QT_")}
    env["QT_QPA_PLATFORM"] = "xcb"  # a real X window: fail rather than fall back to offscreen
    proc = subprocess.run(
        ["xvfb-run", "-a", "-s", "-screen 0 1280x800x24", sys.executable, "-m",
         "veraltheim.client.ui.app", "--local-only", "--screenshot", str(out)],
        capture_output=True, text=True, timeout=180, env=env,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr
    with Image.open(out) as image:
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 10


def test_an_unreachable_service_is_said_in_the_window_and_local_work_goes_on(make_shell, run):
    from veraltheim.client.ui.waiting import wait_signal

    shell = make_shell()
    conn = shell.connection

    async def scenario():
        await shell.start("ws://127.0.0.1:9/socket/websocket", "")  # nothing listens on port 9
        await wait_until(lambda: conn.state == "reconnecting", [conn.changed], 30, "reconnecting")
        assert shell.notices.kind == "warning"
        assert "reconnecting" in item(shell, "messageText").property("text")
        assert "Local runs and notes keep working" in item(shell, "messageHint").property("text")
        wb = shell.workbench
        wb.selectKernel("hash.sha256")
        wb.setWhere("auto")
        assert wb.needsInput
        wb.selectKernel("fractal.mandelbrot")
        wb.setParam("width", 32)
        wb.setParam("height", 32)
        finished = asyncio.ensure_future(wait_signal(wb.finished, 60))
        wb.run()
        assert (await finished) == ("ok",), shell.notices.text
        assert wb.resultInfo.startswith("Ran locally")
        assert shell.runs.model.count == 1  # kept in the local copy until the service is back

    run(scenario())


def test_the_workbench_is_reachable_with_tab_and_space_alone(make_shell, run):
    from veraltheim.client.ui.waiting import wait_signal

    shell = make_shell()
    wb = shell.workbench

    async def scenario():
        await shell.set_link("", "")
        wb.setParam("width", 48)
        wb.setParam("height", 32)
        reached = []
        for _ in range(40):
            await key(shell, Qt.Key.Key_Tab)
            focus = shell.window.activeFocusItem()
            reached.append(focus.objectName() if focus is not None else "")
            if reached[-1] == "runButton":
                break
        assert {"navWorkbench", "kernelPicker", "where_local", "runButton"} <= set(reached)
        finished = asyncio.ensure_future(wait_signal(wb.finished, 60))
        await key(shell, Qt.Key.Key_Space)  # presses the focused Run button
        assert (await finished) == ("ok",), shell.notices.text

    run(scenario())


def test_closing_the_window_ends_the_app_cleanly_with_the_gc_back_on(app_dirs, run):
    from PySide6.QtGui import QGuiApplication
    from veraltheim.client.ui.app import parse_args, run_window

    async def scenario():
        app_task = asyncio.ensure_future(run_window(parse_args(["--local-only"])))
        windows = []
        for _ in range(100):  # a few loop turns: run_window loads the window before it awaits
            await asyncio.sleep(0)
            windows = [w for w in QGuiApplication.topLevelWindows() if w.isVisible()]
            if windows:
                break
        assert len(windows) == 1
        windows[0].close()  # as the user does
        return await asyncio.wait_for(app_task, 30)

    gc.disable()  # as main() does for the start-up: the window turns it back on once it drew
    try:
        assert run(scenario()) == 0
        assert gc.isenabled()
    finally:
        gc.enable()
    assert not [w for w in QGuiApplication.topLevelWindows() if w.isVisible()]


def test_sigterm_ends_the_app_cleanly(app_dirs):
    import signal

    from veraltheim.client.ui.app import FIRST_FRAME_ENV

    env = {**os.environ, FIRST_FRAME_ENV: "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "veraltheim.client.ui.app", "--offscreen", "--local-only"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stdout.readline().startswith("first-frame ")  # the window is up
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_settings_show_the_address_in_use_when_it_is_not_the_saved_one(make_shell, run, app_dirs):
    shell = make_shell()
    given = "ws://127.0.0.1:9/socket/websocket"  # as with --service; nothing listens on 9
    saved = shell.settings.value.service_url
    assert saved != given

    async def scenario():
        await shell.start(given, "")
        shell.show_view(View.SETTINGS)
        assert item(shell, "settingsServiceUrl").property("text") == given
        note = item(shell, "settingsAddressNote")
        assert note.isVisible() and saved in note.property("text")
        save_artifact(shell, "settings-address-in-use")
        socket = shell.socket
        await click(shell, "settingsSave")  # keeps the address in use: no reconnect elsewhere
        assert shell.socket is socket and shell.connection.address == given
        assert not note.isVisible()

    run(scenario())
    assert json.loads((app_dirs / "config" / "settings.json").read_text())["service_url"] == given


def test_the_window_follows_a_dark_system_palette(make_shell, run, qapp):
    from PySide6.QtGui import QColor, QGuiApplication, QPalette

    def brightness(shell) -> float:
        image = shell.grab()
        pixels = [
            QColor(image.pixel(x, y)).lightness()
            for x in range(0, image.width(), 29)
            for y in range(40, image.height(), 31)
        ]
        return sum(pixels) / len(pixels)

    light = make_shell()
    run(light.set_link("", ""))
    light.show_view(View.NOTES)
    light_brightness = brightness(light)
    original = QGuiApplication.palette()
    dark = QPalette(original)
    for role, colour in (
        (QPalette.ColorRole.Window, "#202124"),
        (QPalette.ColorRole.Base, "#2b2b2b"),
        (QPalette.ColorRole.AlternateBase, "#333333"),
        (QPalette.ColorRole.Button, "#3a3a3a"),
        (QPalette.ColorRole.WindowText, "#e8e8e8"),
        (QPalette.ColorRole.Text, "#e8e8e8"),
        (QPalette.ColorRole.ButtonText, "#e8e8e8"),
        (QPalette.ColorRole.PlaceholderText, "#9a9a9a"),
    ):
        dark.setColor(role, QColor(colour))
    try:
        QGuiApplication.setPalette(dark)  # as the desktop does when it switches to dark
        shell = make_shell()
        run(shell.set_link("", ""))
        shell.show_view(View.NOTES)
        save_artifact(shell, "dark-notes")
        assert brightness(shell) < 90 < light_brightness
        assert brightness(light) < 90  # the open window switched too
    finally:
        QGuiApplication.setPalette(original)


def test_a_service_url_that_is_not_ws_is_refused_at_the_command_line(capsys):
    import pytest
    from veraltheim.client.ui.app import parse_args

    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--service", "http://127.0.0.1:4000"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "http://127.0.0.1:4000 is not a service address" in err and "ws://HOST:PORT" in err
    assert parse_args(["--service", "wss://h:1/socket/websocket"]).service.startswith("wss://")


def test_an_unknown_view_is_refused_at_the_command_line(capsys):
    import pytest
    from veraltheim.client.ui.app import parse_args

    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--view", "Bogus"])
    assert exit_info.value.code == 2
    assert "unknown view 'Bogus': one of Workbench, Runs" in capsys.readouterr().err
    assert parse_args(["--view", "runs"]).view == "Runs"
    assert parse_args([]).view == "Workbench"

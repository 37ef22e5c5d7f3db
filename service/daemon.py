"""`start`, `stop` and `status` of the background service: pidfile, detaching, waiting for exit.

`start` forks once so that the command itself can wait for the daemon's answer (the listening
URL or an error) through a pipe; the child enters python-daemon's DaemonContext (which detaches
again and takes the pidfile), and only then runs asyncio, so the loop and sockets belong to the
daemon process.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import signal
import time
from collections.abc import Callable
from pathlib import Path

from veraltheim.protocol.constants import READY_LINE_PREFIX
from veraltheim.service.config import ServiceConfig

START_TIMEOUT_S = 30.0
STOP_MARGIN_S = 15.0  # on top of shutdown_grace_s: closing sockets and components
POLL_S = 0.05  # only where pidfd is missing (not Linux)


class DaemonError(RuntimeError):
    """start/stop could not do what was asked; the message says why."""


def url_file(pidfile: Path) -> Path:
    """Where the daemon records its listening URL for `status`."""
    return pidfile.with_name(pidfile.name + ".url")


def read_pid(pidfile: Path) -> int | None:
    try:
        text = pidfile.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise DaemonError(f"cannot read pidfile {pidfile}: {e.strerror}") from None
    try:
        pid = int(text)
    except ValueError:
        return None
    return pid if pid > 0 else None


def process_alive(pid: int) -> bool:
    """True if pid runs; a zombie (exited, not yet reaped by its parent) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] != "Z"
    return True


# How the service's process is started: the console script (or a frozen build of it), or
# `python -m veraltheim.service`.
SERVICE_PROGRAM = "veraltheim-service"
SERVICE_MODULE = "veraltheim.service"


def is_service_command(argv: list[str]) -> bool:
    """Whether a command line runs our service: its program (or the script the interpreter
    runs) is `veraltheim-service`, or it is `python -m veraltheim.service`. Not merely a word
    "service" anywhere in it (issue 10: `stop` signalled any such process)."""
    names = [Path(arg).name for arg in argv[:2]]
    if SERVICE_PROGRAM in names:
        return True
    return any(a == "-m" and b == SERVICE_MODULE for a, b in itertools.pairwise(argv))


def runs_service(pid: int) -> bool:
    """Whether pid's command line is ours: a pidfile left by a killed daemon may name a pid
    the system has since given to an unrelated process, which `stop` must not signal."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (macOS): trust the pidfile
    return is_service_command(cmdline.decode("utf-8", "replace").split("\0"))


def running_pid(pidfile: Path) -> int | None:
    """The pid of the running daemon, or None (a stale pidfile is removed)."""
    pid = read_pid(pidfile)
    if pid is not None and process_alive(pid) and runs_service(pid):
        return pid
    if pidfile.exists():
        remove_stale(pidfile)
    return None


def remove_stale(pidfile: Path) -> None:
    for path in (pidfile, url_file(pidfile)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def wait_gone(pid: int, timeout_s: float) -> bool:
    """Wait until pid has exited (it is not our child: no waitpid); True if it did in time."""
    deadline = time.monotonic() + timeout_s
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    except (AttributeError, OSError):
        fd = None
    try:
        while process_alive(pid):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if fd is not None:
                # A pidfd turns readable when the process exits.
                select.select([fd], [], [], left)
            else:
                time.sleep(min(POLL_S, left))
        return True
    finally:
        if fd is not None:
            os.close(fd)


def stop(config: ServiceConfig) -> int:
    """SIGTERM the daemon and wait until it is gone; return its pid."""
    pidfile = config.pidfile_path
    pid = running_pid(pidfile)
    if pid is None:
        raise DaemonError(f"not running (no service process named in {pidfile})")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    timeout = config.shutdown_grace_s + STOP_MARGIN_S
    if not wait_gone(pid, timeout):
        raise DaemonError(f"pid {pid} did not exit within {timeout:g} s of SIGTERM")
    if read_pid(pidfile) == pid:
        remove_stale(pidfile)
    return pid


def start(config: ServiceConfig, run: Callable[[Callable[[str], None]], None]) -> tuple[int, str]:
    """Run `run(announce)` in a detached daemon; return (daemon pid, listening URL).

    `run` must call `announce(url)` once it accepts connections and return when stopped.
    """
    pidfile = config.pidfile_path
    pid = running_pid(pidfile)
    if pid is not None:
        raise DaemonError(f"already running (pid {pid}, pidfile {pidfile})")
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    log_path = config.daemon_log_path
    log_path.parent.mkdir(parents=True, exist_ok=True)

    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked process
        os.close(read_end)
        code = 1
        try:
            code = _daemon_main(config, run, write_end, log_path)
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        answer = _read_line(read_end, START_TIMEOUT_S)
    finally:
        os.close(read_end)
        os.waitpid(child, 0)  # the intermediate process exits as soon as it has detached
    if answer.startswith(READY_LINE_PREFIX):
        url = answer.removeprefix(READY_LINE_PREFIX)
        return (read_pid(pidfile) or 0), url
    if answer.startswith("error: "):
        raise DaemonError(answer.removeprefix("error: "))
    if not answer:
        raise DaemonError(f"the daemon exited before listening; see {log_path}")
    raise DaemonError(f"no answer from the daemon within {START_TIMEOUT_S:g} s; see {log_path}")


def _read_line(fd: int, timeout_s: float) -> str:
    """One line from the pipe; "" on EOF; a non-line marker on timeout."""
    deadline = time.monotonic() + timeout_s
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return "timeout"
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0].decode(errors="replace").strip()


def _daemon_main(
    config: ServiceConfig, run: Callable[[Callable[[str], None]], None], pipe: int, log_path: Path
) -> int:  # pragma: no cover - runs in the daemon
    import daemon
    import daemon.pidfile
    import lockfile

    def tell(line: str) -> None:
        nonlocal pipe
        if pipe >= 0:
            with contextlib.suppress(OSError):
                os.write(pipe, (line.replace("\n", " ") + "\n").encode())
                os.close(pipe)
            pipe = -1

    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - handed to the daemon context
    os.chmod(log_path, 0o640)
    context = daemon.DaemonContext(
        pidfile=daemon.pidfile.TimeoutPIDLockFile(str(config.pidfile_path), acquire_timeout=0),
        files_preserve=[pipe, log],
        stdout=log,
        stderr=log,
        umask=0o027,
        working_directory="/",
    )
    urls = url_file(config.pidfile_path)

    def announce(url: str) -> None:
        urls.write_text(url + "\n")
        tell(READY_LINE_PREFIX + url)

    try:
        with context:
            try:
                run(announce)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    urls.unlink()
    except (lockfile.AlreadyLocked, lockfile.LockTimeout):
        tell(f"error: already running (pidfile {config.pidfile_path} is locked)")
        return 1
    except BaseException as e:
        from veraltheim.service.runner import error_message

        tell(f"error: {error_message(e, config)}")
        print(f"veraltheim-service: daemon failed: {e!r}", file=log, flush=True)
        return 1
    tell("error: stopped before listening")
    return 0

"""The Connection view's controller: the link's state, round trip, TLS, sign-in and presence."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Property, QObject, QTimer, Signal, Slot
from veraltheim.client.net.state import ConnectionState
from veraltheim.client.ui.models import DictListModel
from veraltheim.client.ui.notices import NoticeKind, Notices
from veraltheim.client.ui.qml import qml_type
from veraltheim.client.ui.settings import SERVICE_URL_HINT, service_url_problem
from veraltheim.protocol.constants import LOBBY_TOPIC

# The window's link states: the socket's (ConnectionState values), and this one with no socket.
DISCONNECTED = "disconnected"
RTT_REFRESH_MS = 1000
PING_EVERY = 5  # a heartbeat round trip every 5 refreshes keeps the shown RTT fresh


def state_name(state: Any) -> str:
    """ConnectionState.CONNECTED -> "connected" (works for enums and plain strings)."""
    return str(getattr(state, "name", state)).lower()


@qml_type
class Connection(QObject):
    changed = Signal()
    stateChanged = Signal(str)
    reconnectRequested = Signal(str, str)  # address, token: the shell rebuilds the link

    def __init__(self, notices: Notices, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.notices = notices
        self.socket: Any = None
        self.lobby: Any = None
        self.presence: Any = None
        self._address = ""
        self._state: str = DISCONNECTED
        self._detail = ""
        self._user = ""
        self._rtt = -1.0
        self._rtt_ticks = 0
        self._state_ref: int | None = None
        self._people = DictListModel(["user", "detail"], self)
        self.state_listeners: list[Callable[[str], None]] = []
        self._rtt_timer = QTimer(self)
        self._rtt_timer.setInterval(RTT_REFRESH_MS)
        self._rtt_timer.timeout.connect(self._refresh_rtt)

    def attach(self, socket: Any, address: str) -> None:
        """Follow a new Socket (made by the shell) and join the lobby for presence."""
        self.socket = socket
        self._address = address
        self._user = ""
        self._people.reset([])
        # only the current socket speaks: an old one going offline must not overwrite the state
        self._state_ref = socket.on_state(
            lambda state: self._on_state(state) if socket is self.socket else None
        )
        # a new Socket is OFFLINE until connect() (which the shell calls next): say connecting
        self._set_state(ConnectionState.CONNECTING, "")
        self._rtt_timer.start()
        self.notices.spawn(self._join_lobby(socket), "Lobby: ")

    def detach(self) -> None:
        if self.socket is not None and self._state_ref is not None:
            self.socket.off(self._state_ref)
        self._state_ref = None
        self.socket = None
        self.lobby = None
        self.presence = None
        self._rtt_timer.stop()
        self._people.reset([])
        self._rtt = -1.0
        self._set_state(DISCONNECTED, "")

    async def _join_lobby(self, socket: Any) -> None:
        from veraltheim.client.net.presence import Presence
        from veraltheim.client.net.push import JoinError, PushTimeout

        channel = socket.channel(LOBBY_TOPIC)
        presence = Presence(channel)
        presence.on_sync(self._on_presence)
        channel.on_join(self._on_lobby_joined)  # every join and rejoin (service restarts)
        self.lobby, self.presence = channel, presence
        try:
            await channel.join(timeout=10)
        except PushTimeout:
            pass  # not connected yet: the channel keeps trying and on_join reports success
        except JoinError as exc:
            self._set_state(self._state, f"The service refused the lobby: {exc}")
            self.notices.error(exc, "Sign-in: ")

    def _on_lobby_joined(self, response: Any = None, *_: Any) -> None:
        if isinstance(response, dict):
            user = response.get("user") or response.get("user_id")
            if user and user != self._user:
                self._user = str(user)
                self.changed.emit()

    def _on_presence(self, *_: Any) -> None:
        if self.presence is None:
            return
        rows = []
        for key, metas in self.presence.list():
            n = len(metas) if isinstance(metas, list) else 1
            rows.append({"user": str(key), "detail": f"{n} connections" if n > 1 else ""})
        self._people.reset(sorted(rows, key=lambda r: r["user"]))

    def _on_state(self, state: Any) -> None:
        name = state_name(state)
        detail = ""
        if name == ConnectionState.OFFLINE:
            reason = getattr(self.socket, "offline_reason", None) or "it cannot be reached"
            detail = f"Not trying now: {reason}. Check the address and token, then connect again."
        elif name == ConnectionState.RECONNECTING:
            detail = (
                "No link to it now; reconnecting on its own. Local runs and notes keep working."
            )
        self._set_state(name, detail)

    def _set_state(self, name: str, detail: str) -> None:
        name = str(name)  # a plain string for Qt, whether a ConnectionState or DISCONNECTED
        changed = name != self._state
        self._state, self._detail = name, detail
        self.changed.emit()
        if changed:
            self.stateChanged.emit(name)
            for listener in list(self.state_listeners):
                listener(name)
        if name == ConnectionState.CONNECTED:
            self.notices.clear(NoticeKind.WARNING)
            if changed and self.socket is not None:  # a first round trip at once
                self.notices.spawn(self._ping(self.socket), "Ping: ")
        elif name in (ConnectionState.RECONNECTING, ConnectionState.OFFLINE) and changed:
            self.notices.show(
                NoticeKind.WARNING, f"The service at {self._address} is {name}.", detail
            )

    def _refresh_rtt(self) -> None:
        self._rtt_ticks += 1
        socket = self.socket
        if (
            socket is not None
            and self._state == ConnectionState.CONNECTED
            and self._rtt_ticks % PING_EVERY == 1
        ):
            self.notices.spawn(self._ping(socket), "Ping: ")
        rtt = getattr(socket, "rtt_ms", None) if socket is not None else None
        value = float(rtt) if rtt is not None else -1.0
        if value != self._rtt:
            self._rtt = value
            self.changed.emit()

    async def _ping(self, socket: Any) -> None:
        from veraltheim.client.net.push import PushTimeout
        from veraltheim.client.net.socket import SocketOffline

        with contextlib.suppress(PushTimeout, SocketOffline, TimeoutError):
            rtt = await socket.ping(timeout=5)
            if socket is self.socket:
                self._rtt = float(rtt)
                self.changed.emit()

    @Slot(str, str)
    def connectTo(self, address: str, token: str) -> None:
        address = address.strip()
        problem = service_url_problem(address)
        if problem:
            self.notices.show(NoticeKind.ERROR, problem, SERVICE_URL_HINT)
            return
        self.reconnectRequested.emit(address, token.strip())

    @Slot()
    def disconnectNow(self) -> None:
        self.reconnectRequested.emit("", "")

    def _summary(self) -> str:
        if self._state == DISCONNECTED:
            return "Not connected (local only)"
        rtt = (
            f", {self._rtt:.1f} ms"
            if self._rtt >= 0 and self._state == ConnectionState.CONNECTED
            else ""
        )
        who = f" as {self._user}" if self._user else ""
        return f"{self._state.capitalize()}{who} \u2014 {self._address}{rtt}"

    address = Property(str, lambda self: self._address, notify=changed)
    state = Property(str, lambda self: self._state, notify=changed)
    # what the views test, so they never spell a state out
    connected = Property(
        bool, lambda self: self._state == ConnectionState.CONNECTED, notify=changed
    )
    offline = Property(bool, lambda self: self._state == ConnectionState.OFFLINE, notify=changed)
    linked = Property(bool, lambda self: self._state != DISCONNECTED, notify=changed)
    detail = Property(str, lambda self: self._detail, notify=changed)
    user = Property(str, lambda self: self._user, notify=changed)
    rttMs = Property(float, lambda self: self._rtt, notify=changed)
    tls = Property(bool, lambda self: self._address.startswith("wss://"), notify=changed)
    summary = Property(str, _summary, notify=changed)
    people = Property(DictListModel, lambda self: self._people, constant=True)

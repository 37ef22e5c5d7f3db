"""The client side of a `compute:<pool>` channel: catalogue, jobs, progress, cancel.

Plain asyncio over client.net; knows the wire shapes, not the cost model.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from veraltheim.client.compute.errors import RemoteError, RemoteUnavailable
from veraltheim.client.net.push import JoinError, PushTimeout
from veraltheim.client.net.socket import Socket
from veraltheim.client.net.state import ConnectionState
from veraltheim.protocol.channel_client import ChannelState
from veraltheim.protocol.envelope import pack_envelope, unpack_envelope
from veraltheim.protocol.errors import ProtocolError
from veraltheim.protocol.reasons import ComputeEvent, Reason
from veraltheim.wasm import Cancelled

Progress = Callable[[int, int], None]
JOIN_TIMEOUT_S = 5.0
KERNELS_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 5.0
UPLOAD_TIMEOUT_S = 60.0  # the service compiles the module and runs its examples
CANCEL_POLL_S = 0.01  # CancelToken is a plain flag (read by the wasm epoch callback): poll it


async def open_socket(url: str, token: str | None) -> Socket:
    """A Socket for a one-off command (no retry on 403); not connected after CONNECT_TIMEOUT_S:
    its state says why, and the dispatcher treats it as offline."""
    sock = Socket(url, token=token, forbidden_retry_s=None)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(sock.connect(), CONNECT_TIMEOUT_S)
    return sock


@dataclass
class RemoteResult:
    output: bytes
    header: dict[str, Any]
    wall_ms: float
    bytes_moved: int


class RemoteCompute:
    """One joined compute topic on a Socket; `run()` sends a job and awaits its reply."""

    def __init__(self, socket: Any, topic: str) -> None:
        self.socket = socket
        self.topic = topic
        self.channel: Any = None
        self.catalogue: dict[str, dict[str, Any]] = {}
        self.load: dict[str, Any] = {}
        self.load_at = 0.0
        self.ids = itertools.count(1)
        self.prefix = f"{id(self):x}-"
        self.progress: dict[str, Progress] = {}
        self.lost: dict[str, asyncio.Future[None]] = {}
        self._changed = asyncio.Event()  # set on every socket state change, join and drop
        if socket is not None:
            socket.on_state(self._notify)

    @property
    def online(self) -> bool:
        return self.socket is not None and self.socket.state == ConnectionState.CONNECTED

    @property
    def joined(self) -> bool:
        return self.channel is not None and self.channel.can_push

    @property
    def not_ready(self) -> str | None:
        """None when a job can be sent now; else why not: "offline" (the socket is OFFLINE:
        not trying), "service reconnecting" or "compute channel rejoining" (back soon)."""
        if self.socket is None or self.socket.state == ConnectionState.OFFLINE:
            return "offline"
        if self.socket.state != ConnectionState.CONNECTED:
            return "service reconnecting"
        if self.channel is not None and not self.joined:
            return "compute channel rejoining"
        return None

    async def wait_joined(self, timeout_s: float, cancel: Any = None) -> None:
        """Wait (at most `timeout_s`) until a job can be sent: the socket connected, the topic
        joined (joining it if it never was) and the catalogue known. RemoteUnavailable when
        the socket is or goes OFFLINE, the join is refused, or the time runs out."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while True:
            if cancel is not None and cancel.cancelled:
                raise Cancelled("cancelled while waiting for the service")
            if self.socket is None or self.socket.state == ConnectionState.OFFLINE:
                why = self.socket.offline_reason if self.socket is not None else None
                raise RemoteUnavailable(f"the service is offline ({why or 'not connected'})")
            if self.channel is not None and self.channel.state == ChannelState.CLOSED:
                self.channel = None  # closed for good (left, or refused): join afresh
            if self.joined and self.catalogue:
                return
            remaining = end - loop.time()
            if remaining <= 0:
                what = "rejoin " + self.topic if self.online else "reconnect"
                raise RemoteUnavailable(f"the service did not {what} within {timeout_s:g} s")
            if self.online and (self.channel is None or self.joined):
                try:  # never joined, or joined without the catalogue yet
                    await asyncio.wait_for(self.ensure_joined(), remaining)
                except JoinError as exc:
                    raise RemoteUnavailable(
                        f"the service refused {self.topic}: {exc.response}"
                    ) from None
                except (PushTimeout, TimeoutError):
                    pass  # no answer yet: try again while time is left
                continue
            self._changed.clear()
            poll = remaining if cancel is None else min(remaining, CANCEL_POLL_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), poll)

    def _notify(self, *_: Any) -> None:
        self._changed.set()

    async def ensure_joined(self) -> None:
        """Join once (rejoins after drops are the channel's business), then fetch the catalogue."""
        if self.channel is None:
            ch = self.socket.channel(self.topic)
            ch.on(ComputeEvent.PROGRESS, self._on_progress)
            ch.on_join(self._notify)
            ch.on_error(self._on_channel_down)
            ch.on_close(self._on_channel_down)
            self.channel = ch
            try:
                await ch.join(timeout=JOIN_TIMEOUT_S)
            except JoinError:
                self.channel = None  # refused: a later call may try again with a new channel
                raise
            await self.refresh()
        elif not self.catalogue and self.joined:
            await self.refresh()

    async def refresh(self, catalogue: bool = True) -> float:
        """Ask `kernels` (the load, and the catalogue unless told not to); return the round
        trip in ms (without the catalogue, a small reply: a sample of the link's RTT)."""
        start = time.perf_counter()
        payload = {} if catalogue else {"catalogue": False}
        reply = await self.channel.push(ComputeEvent.KERNELS, payload, timeout=KERNELS_TIMEOUT_S)
        rtt_ms = (time.perf_counter() - start) * 1000
        if not reply.ok:
            raise RemoteError(reply.response.get("reason", "error"), str(reply.response))
        if catalogue:
            self.catalogue = dict(reply.response.get("kernels") or {})
        self.load = dict(reply.response.get("load") or {})
        self.load_at = time.monotonic()
        return rtt_ms

    async def probe(self, nbytes: int) -> float:
        """Echo `nbytes` through the service; the round trip in ms (for RTT and bandwidth)."""
        start = time.perf_counter()
        reply = await self.channel.push(
            ComputeEvent.PROBE, bytes(nbytes), timeout=KERNELS_TIMEOUT_S * 4
        )
        if not reply.ok:
            raise RemoteError(reply.response.get("reason", "error"), str(reply.response))
        return (time.perf_counter() - start) * 1000

    async def run(
        self,
        kernel: str,
        data: bytes | bytearray | memoryview,
        params: dict[str, Any],
        *,
        timeout_s: float,
        progress: Progress | None = None,
        cancel: Any = None,
        deadline_s: float | None = None,
    ) -> RemoteResult:
        if not self.joined:
            raise RemoteUnavailable(f"not joined to {self.topic}")
        job_id = self.prefix + str(next(self.ids))
        header: dict[str, Any] = {"kernel": kernel, "params": params, "id": job_id}
        if deadline_s is not None:
            header["deadline_s"] = deadline_s
        payload = pack_envelope(header, data)
        lost = self.lost[job_id] = asyncio.get_running_loop().create_future()
        if progress is not None:
            self.progress[job_id] = progress
        start = time.perf_counter()
        push = self.channel.push(ComputeEvent.REQUEST, payload, timeout=timeout_s)
        waiters = {asyncio.ensure_future(push), lost}
        watcher = asyncio.ensure_future(_watch_cancel(cancel)) if cancel is not None else None
        if watcher is not None:
            waiters.add(watcher)
        try:
            try:
                done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:  # our caller gave up: the service need not go on
                if self.joined:
                    self.channel.push(ComputeEvent.CANCEL, {"id": job_id})
                raise
            if watcher is not None and watcher in done:
                self.channel.push(ComputeEvent.CANCEL, {"id": job_id})
                raise Cancelled(f"{kernel}: cancelled")
            if lost in done:
                raise RemoteUnavailable(f"the connection to the service dropped during {kernel}")
            try:
                reply = push.future.result()
            except PushTimeout:
                # We give up on it (and run it here): the service need not finish it either.
                if self.joined:
                    self.channel.push(ComputeEvent.CANCEL, {"id": job_id})
                raise
        finally:
            for w in waiters:
                if w is not lost:
                    w.cancel()
            self.lost.pop(job_id, None)
            self.progress.pop(job_id, None)
        wall_ms = (time.perf_counter() - start) * 1000
        if not reply.ok:
            resp = reply.response if isinstance(reply.response, dict) else {}
            if resp.get("reason") == Reason.CANCELLED:
                raise Cancelled(f"{kernel}: {resp.get('message', 'cancelled')}")
            raise RemoteError(resp.get("reason", "error"), resp.get("message", str(resp)), resp)
        if not isinstance(reply.response, bytes):
            raise RemoteError("bad_reply", f"{kernel}: the service answered without an envelope")
        try:
            header, output = unpack_envelope(reply.response)
        except ProtocolError as exc:
            raise RemoteError("bad_reply", f"{kernel}: {exc}") from None
        if isinstance(header.get("load"), dict):
            self.load = {**self.load, **header["load"]}
            self.load_at = time.monotonic()
        return RemoteResult(output, header, wall_ms, len(payload) + len(reply.response))

    # --- users' kernels -----------------------------------------------------------------------

    async def upload_kernel(self, wasm: bytes, wire_spec: dict[str, Any]) -> dict[str, Any]:
        """Install a kernel on the service (needs the token's `kernels` grant); its reply."""
        payload = pack_envelope({"spec": wire_spec}, wasm)
        return await self._admin(ComputeEvent.KERNEL_ADD, payload, UPLOAD_TIMEOUT_S)

    async def remove_kernel(self, name: str) -> dict[str, Any]:
        return await self._admin(ComputeEvent.KERNEL_REMOVE, {"name": name}, KERNELS_TIMEOUT_S)

    async def fetch_kernel(self, name: str) -> tuple[bytes, dict[str, Any]]:
        """A user kernel's module and wire spec, the module checked against the sha256 the
        service gave in its catalogue and in the reply."""
        reply = await self._admin(ComputeEvent.KERNEL_FETCH, {"name": name}, UPLOAD_TIMEOUT_S)
        if not isinstance(reply, bytes):
            raise RemoteError("bad_reply", f"{name}: the service answered without an envelope")
        try:
            header, wasm = unpack_envelope(reply)
        except ProtocolError as exc:
            raise RemoteError("bad_reply", f"{name}: {exc}") from None
        actual = hashlib.sha256(wasm).hexdigest()
        listed = (self.catalogue.get(name) or {}).get("sha256")
        if actual != header.get("sha256") or (listed is not None and listed != actual):
            raise RemoteError(
                "integrity", f"{name}: the module received does not match its sha256; dropped"
            )
        return wasm, header.get("spec") or {}

    async def _admin(self, event: str, payload: Any, timeout_s: float) -> Any:
        if not self.joined:
            raise RemoteUnavailable(f"not joined to {self.topic}")
        reply = await self.channel.push(event, payload, timeout=timeout_s)
        if not reply.ok:
            resp = reply.response if isinstance(reply.response, dict) else {}
            raise RemoteError(resp.get("reason", "error"), resp.get("message", str(resp)), resp)
        if event != ComputeEvent.KERNEL_FETCH:
            await self.refresh()  # the catalogue changed
        return reply.response

    def _on_progress(self, payload: Any) -> None:
        if isinstance(payload, dict):
            cb = self.progress.get(str(payload.get("id")))
            if cb is not None:
                cb(int(payload.get("done", 0)), int(payload.get("total", 0)))

    def _on_channel_down(self, reason: Any) -> None:
        self._changed.set()
        for fut in self.lost.values():
            if not fut.done():
                fut.set_result(None)


async def _watch_cancel(token: Any) -> None:
    # CancelToken is a plain flag read by the wasm epoch callback; poll it at a similar pace.
    while not token.cancelled:
        await asyncio.sleep(CANCEL_POLL_S)

"""client.net is plain asyncio: it runs unchanged on the app's qasync (Qt) event loop."""

import asyncio

import pytest
from veraltheim.client.net.push import Reply
from veraltheim.client.net.socket import Socket
from veraltheim.client.net.state import ConnectionState

from tests.unit.test_client_net_socket import FakeService


def test_socket_joins_and_pushes_on_a_qasync_loop():
    qasync = pytest.importorskip("qasync")
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication.instance() or QGuiApplication([])  # the app's kind of application

    async def scenario() -> tuple[ConnectionState, Reply, Reply]:
        async with FakeService() as fake:
            sock = Socket(fake.url, token="t")
            await sock.connect()
            ch = sock.channel("room:1")
            await ch.join()
            replies = await ch.push("echo", {"on": "qt"}), await ch.push("echo", b"qt")
            state = sock.state
            await sock.disconnect()
            return state, *replies

    loop = qasync.QEventLoop(app)
    try:
        state, json_reply, binary_reply = loop.run_until_complete(scenario())
    finally:
        loop.close()
        asyncio.set_event_loop(None)
    assert state == ConnectionState.CONNECTED
    assert json_reply == Reply("ok", {"on": "qt"}) and binary_reply == Reply("ok", b"qt")

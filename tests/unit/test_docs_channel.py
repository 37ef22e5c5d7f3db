"""The doc channel in an in-process Service: an update is in the store before any member sees it."""

from __future__ import annotations

import asyncio

from pycrdt import Doc, Map, create_update_message
from veraltheim.client.net.socket import Socket
from veraltheim.protocol.ysync import DOC_TOPIC_PREFIX, YJS_EVENT
from veraltheim.service.app import Service
from veraltheim.service.config import ServiceConfig
from veraltheim.service.docs.channel import DocChannel

WAIT_S = 10.0


async def test_an_update_is_stored_before_it_is_broadcast(tmp_path, monkeypatch):
    stored_at_broadcast: list[list[bytes]] = []
    original = DocChannel.broadcast_from

    def recording(self, event, payload):
        stored_at_broadcast.append(self.live._store.load_now(self.live.name).updates)
        return original(self, event, payload)

    monkeypatch.setattr(DocChannel, "broadcast_from", recording)
    service = Service(ServiceConfig(host="127.0.0.1", port=0, data_dir=tmp_path, auth=False))
    host, port = await service.start()
    url = f"ws://{host}:{port}/socket/websocket"
    writer, reader = Socket(url), Socket(url)
    try:
        await asyncio.gather(writer.connect(), reader.connect())
        topic = DOC_TOPIC_PREFIX + "ordered"
        writing, reading = writer.channel(topic), reader.channel(topic)
        await asyncio.gather(writing.join(), reading.join())
        heard: asyncio.Queue[bytes] = asyncio.Queue()
        reading.on(YJS_EVENT, heard.put_nowait)

        source = Doc()
        source.get("m", type=Map)["k"] = 1
        update = source.get_update()
        reply = await writing.push(YJS_EVENT, create_update_message(update), timeout=WAIT_S)
        assert reply.ok
        assert await asyncio.wait_for(heard.get(), WAIT_S) == create_update_message(update)
        assert stored_at_broadcast == [[update]]  # committed when the broadcast went out
    finally:
        await asyncio.gather(writer.disconnect(), reader.disconnect())
        await service.stop(1)

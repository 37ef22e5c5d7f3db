"""A Yjs web client (yjs + y-phoenix-channel + phoenix.js under Node) and our Python client edit
the same document through the service, and both end with the same content."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
from veraltheim.client.net.socket import Socket
from veraltheim.client.state.notes import Notes
from veraltheim.client.state.run_history import RunHistory
from veraltheim.client.state.store import DocumentStore

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "yjs_client.mjs"

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
    pytest.mark.skipif(
        not (HERE / "node_modules" / "y-phoenix-channel").is_dir(),
        reason="npm packages missing: run scripts/bootstrap.sh",
    ),
]


async def wait_for(predicate, timeout: float = 15.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


async def read_event(stream: asyncio.StreamReader, timeout: float = 20.0) -> dict:
    line = await asyncio.wait_for(stream.readline(), timeout)
    assert line, "the node client exited without reporting"
    return json.loads(line)


async def test_node_yjs_client_and_python_client_edit_one_document(service, tmp_path):
    sock = Socket(service.ws_url, token=service.token("python"))
    await sock.connect()
    store = DocumentStore(tmp_path / "cache.sqlite3", sock)
    doc = await store.open("interop")
    await doc.wait_synced()
    notes = Notes(doc)
    notes.append("py1 ")
    RunHistory(doc).append({"id": "py-run", "kernel": "image.blur", "status": "done"})
    doc.set_awareness({"user": "python"})
    await doc.flush()

    socket_url = service.ws_url.removesuffix("/websocket")
    node = await asyncio.create_subprocess_exec(
        "node",
        str(SCRIPT),
        socket_url,
        service.token("node"),
        "interop",
        "node1 ",
        "py2",
        cwd=HERE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert node.stdout is not None
        synced = await read_event(node.stdout)
        assert synced == {"event": "synced", "text": "py1 "}  # the node client got our edit

        await wait_for(lambda: "node1" in notes.text)  # and we got its edit
        await wait_for(lambda: {"user": "node", "cursor": 4} in doc.peers().values())
        notes.append("py2")
        done = await read_event(node.stdout)
        assert done["event"] == "done", done
        await wait_for(lambda: notes.text == done["text"])
        assert sorted(done["text"].split()) == ["node1", "py1", "py2"]
        ids = [r["id"] for r in RunHistory(doc).items()]
        assert sorted(ids) == ["node-run", "py-run"]
        assert sorted(r["id"] for r in done["runs"]) == ["node-run", "py-run"]
        assert {"user": "python"} in done["peers"]
        assert await asyncio.wait_for(node.wait(), 10) == 0
    finally:
        if node.returncode is None:
            node.kill()
            await node.wait()
        await store.aclose()
        await sock.disconnect()

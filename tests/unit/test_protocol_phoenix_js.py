"""Our codec against phoenix.js 1.8's own Serializer, run under Node: frames phoenix.js writes
decode here, and frames we write decode there to the same messages."""

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from veraltheim.protocol import Message, decode, encode

ROOT = Path(__file__).resolve().parents[2]
PHOENIX = ROOT / "tests/interop/node_modules/phoenix/priv/static/phoenix.cjs.js"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not PHOENIX.exists(),
    reason="needs node and tests/interop/node_modules (scripts/bootstrap.sh --dev)",
)

# Reads JSON lines {op, ...}; writes one JSON line per input. Binary goes as base64.
SCRIPT = """
const {Serializer} = require(process.argv[1]);
const lines = require("fs").readFileSync(0, "utf8").trim().split("\\n");
const b64 = (buf) => Buffer.from(buf).toString("base64");
const ab = (s) => {
  const b = Buffer.from(s, "base64");
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.length);
};
for (const line of lines) {
  const req = JSON.parse(line);
  if (req.op === "encode") {
    const m = req.msg;
    if (m.binary) m.payload = ab(m.payload);
    Serializer.encode(m, (out) => console.log(JSON.stringify(
      typeof out === "string" ? {text: out} : {binary: b64(out)})));
  } else {
    const raw = req.text !== undefined ? req.text : ab(req.binary);
    Serializer.decode(raw, (m) => {
      const payload = m.payload;
      let out = {join_ref: m.join_ref, ref: m.ref, topic: m.topic, event: m.event};
      if (payload instanceof ArrayBuffer) out.payload_b64 = b64(payload);
      else if (payload && payload.response instanceof ArrayBuffer)
        out.reply = {status: payload.status, response_b64: b64(payload.response)};
      else out.payload = payload;
      console.log(JSON.stringify(out));
    });
  }
}
"""


def run_node(requests: list[dict]) -> list[dict]:
    out = subprocess.run(
        ["node", "-e", SCRIPT, str(PHOENIX)],
        input="\n".join(json.dumps(r) for r in requests),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [json.loads(line) for line in out.stdout.splitlines()]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


CLIENT_PUSHES = [
    Message("3", "4", "lobby", "ping", {"a": [1, 2]}),
    Message("3", "5", "lobby", "ping", b"\x00\x01binary\xff"),
    Message("12", "13", "compute:default", "compute_request", bytes(range(256))),
    Message("1", "2", "doc:é", "yjs", b""),
]


def test_what_phoenix_js_sends_decodes_here():
    requests = []
    for m in CLIENT_PUSHES:
        binary = isinstance(m.payload, bytes)
        msg = {"join_ref": m.join_ref, "ref": m.ref, "topic": m.topic, "event": m.event}
        msg |= {"binary": True, "payload": b64(m.payload)} if binary else {"payload": m.payload}
        requests.append({"op": "encode", "msg": msg})
    for m, out in zip(CLIENT_PUSHES, run_node(requests), strict=True):
        frame = out["text"] if "text" in out else base64.b64decode(out["binary"])
        assert decode(frame, sender="client") == m
        assert encode(m, sender="client") == frame  # and we write the very same bytes


SERVER_FRAMES = [
    Message.reply("3", "4", "lobby", "ok", {"x": 1}),
    Message.reply("3", "5", "lobby", "ok", b"\x00reply"),
    Message.reply("3", "6", "compute:default", "error", b"err"),
    Message("3", None, "compute:default", "progress", b"\x01\x02"),
    Message(None, None, "lobby", "shout", b"\x00all"),
    Message(None, None, "lobby", "presence_diff", {"joins": {}, "leaves": {}}),
    Message("7", "7", "lobby", "phx_close", {}),
]


def test_what_we_send_decodes_in_phoenix_js():
    requests = []
    for m in SERVER_FRAMES:
        frame = encode(m, sender="server")
        requests.append(
            {"op": "decode"}
            | ({"text": frame} if isinstance(frame, str) else {"binary": b64(frame)})
        )
    for m, out in zip(SERVER_FRAMES, run_node(requests), strict=True):
        # phoenix.js reads an empty join_ref in a binary frame as "" (falsy, like null)
        assert (out["join_ref"] or None, out["ref"], out["topic"]) == (m.join_ref, m.ref, m.topic)
        if "reply" in out:
            assert out["event"] == "phx_reply"
            assert out["reply"]["status"] == m.payload["status"]
            assert base64.b64decode(out["reply"]["response_b64"]) == m.payload["response"]
        elif "payload_b64" in out:
            assert out["event"] == m.event
            assert base64.b64decode(out["payload_b64"]) == m.payload
        else:
            assert (out["event"], out["payload"]) == (m.event, m.payload)

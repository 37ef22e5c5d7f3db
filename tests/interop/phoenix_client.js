// Drive the Veraltheim service with the official phoenix npm client (1.8) under Node.
//
// usage: node phoenix_client.js <endpoint ws://H:P/socket> <token> <params|authToken> <user>
// Prints one JSON object with what happened; tests/interop/test_phoenix_js.py asserts on it.
// Exit code 0 when every step finished (asserting is the Python test's job), 1 when one failed.
"use strict"

const {Socket, Presence} = require("phoenix")
const WebSocket = require("ws") // Node 20 has no global WebSocket (FACTS.md)

const [endpoint, token, mode, user] = process.argv.slice(2)
const STEP_TIMEOUT_MS = 10000
// Short, so heartbeats are answered within the test; not so short that a busy CI machine misses
// one (phoenix.js closes the socket when a reply is later than one interval).
const HEARTBEAT_MS = 500

const result = {
  mode,
  opened: false,
  refused: false,
  error_before_open: null,
  joined: false,
  join_response: null,
  presence_keys: [],
  presence_self_metas: 0,
  json_reply: null,
  binary_reply: null,
  binary_reply_type: null,
  shout: null,
  heartbeat_replies: 0,
  ping_rtt_ms: null,
  left: false,
  closed_during_session: null,
  steps: [],
}

let socket = null
let finishing = false

function finish(code) {
  finishing = true
  if (socket) socket.disconnect()
  process.stdout.write(JSON.stringify(result) + "\n", () => process.exit(code))
}

// Resolve when `check()` is true, re-checked on every socket event (no sleeps, no fixed waits).
const waiters = []
function until(name, check) {
  return new Promise((resolve, reject) => {
    if (check()) return resolve()
    const timer = setTimeout(() => reject(new Error(`timeout waiting for ${name}`)), STEP_TIMEOUT_MS)
    waiters.push(() => {
      if (!check()) return false
      clearTimeout(timer)
      resolve()
      return true
    })
  })
}
function wake() {
  for (let i = waiters.length - 1; i >= 0; i--) if (waiters[i]()) waiters.splice(i, 1)
}

function receive(push, name) {
  return new Promise((resolve, reject) => {
    push
      .receive("ok", resolve)
      .receive("error", (r) => reject(new Error(`${name} error reply: ${JSON.stringify(r)}`)))
      .receive("timeout", () => reject(new Error(`${name} timed out`)))
  })
}

async function main() {
  const opts = {
    transport: WebSocket,
    heartbeatIntervalMs: HEARTBEAT_MS,
    timeout: STEP_TIMEOUT_MS,
    reconnectAfterMs: () => 60000, // one attempt: a refused connection must not retry here
  }
  if (mode === "authToken") opts.authToken = token
  else opts.params = {token}
  socket = new Socket(endpoint, opts)

  socket.onOpen(() => { result.opened = true; wake() })
  socket.onError((err) => {
    if (!result.opened) {
      result.refused = true
      result.error_before_open = String((err && err.message) || err)
    }
    wake()
  })
  socket.onClose((ev) => {
    if (!finishing && result.opened) result.closed_during_session = ev && ev.code
    wake()
  })
  socket.onMessage((msg) => {
    if (msg.topic === "phoenix" && msg.event === "phx_reply" && msg.payload.status === "ok") {
      result.heartbeat_replies++
    }
    wake()
  })
  socket.connect()

  await until("open or refusal", () => result.opened || result.refused)
  result.steps.push("connect")
  if (!result.opened) return finish(0)

  const channel = socket.channel("lobby", {client: "phoenix.js"})
  const presence = new Presence(channel)
  presence.onSync(() => {
    result.presence_keys = presence.list((key) => key).sort()
    const own = presence.list((key, {metas}) => (key === user ? metas.length : 0))
    result.presence_self_metas = own.reduce((a, b) => a + b, 0)
    wake()
  })
  channel.on("shout", (payload) => { result.shout = payload; wake() })

  result.join_response = await receive(channel.join(), "join")
  result.joined = true
  result.steps.push("join")

  // Presence is keyed by user id: the token's user must show up, with this one connection.
  await until("own presence", () => result.presence_keys.includes(user))
  result.steps.push("presence")

  const payload = {hello: "world", n: 42, nested: {list: [1, 2.5, null, "x"]}, unicode: "ünï"}
  result.json_reply = await receive(channel.push("ping", payload), "json ping")
  result.steps.push("json ping")

  const bytes = new Uint8Array([0, 1, 2, 127, 128, 250, 255])
  const reply = await receive(channel.push("ping", bytes.buffer), "binary ping")
  result.binary_reply_type = reply && reply.constructor ? reply.constructor.name : typeof reply
  result.binary_reply = reply instanceof ArrayBuffer ? Array.from(new Uint8Array(reply)) : reply
  result.steps.push("binary ping")

  channel.push("shout", {from: "phoenix.js"})
  await until("shout broadcast", () => result.shout !== null)
  result.steps.push("shout")

  await until("two heartbeat replies", () => result.heartbeat_replies >= 2)
  await new Promise((resolve) => socket.ping((rtt) => { result.ping_rtt_ms = rtt; resolve() }))
  result.steps.push("heartbeat")

  await receive(channel.leave(), "leave")
  result.left = true
  result.steps.push("leave")
  finish(0)
}

main().catch((err) => {
  result.failure = String(err && err.message ? err.message : err)
  finish(1)
})

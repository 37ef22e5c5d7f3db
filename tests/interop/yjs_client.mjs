// A Yjs web client as a browser app would run it: yjs + y-phoenix-channel over phoenix.js
// (with `ws` as the WebSocket). It edits the shared notes of one document and reports JSON lines.
//
// node yjs_client.mjs <socket url, e.g. ws://127.0.0.1:PORT/socket> <token> <doc name>
//                     <text to append> <text to wait for>
import { register } from "node:module";
import { Socket } from "phoenix";
import WebSocket from "ws";
import * as Y from "yjs";

// y-phoenix-channel 0.1.1 imports "@y/protocols/sync.js", a subpath its dependency
// @y/protocols 1.0.6-rc.1 does not export (and that release targets lib0 1.x). Resolve it to
// y-protocols 1.0.7, the stable release made for yjs 13, before loading the provider.
register(
  "data:text/javascript," +
    encodeURIComponent(
      "export async function resolve(spec, ctx, next) {" +
        " const m = /^@y\\/protocols\\/(sync|awareness)(\\.js)?$/.exec(spec);" +
        " return next(m ? `y-protocols/${m[1]}.js` : spec, ctx); }",
    ),
);
const { PhoenixChannelProvider } = await import("y-phoenix-channel");

const [url, token, name, mine, waitFor] = process.argv.slice(2);
const TIMEOUT_MS = 20000;

const report = (event, extra = {}) => console.log(JSON.stringify({ event, ...extra }));
const fail = (why) => {
  report("error", { why });
  process.exit(1);
};
setTimeout(() => fail(`timed out waiting for ${JSON.stringify(waitFor)}`), TIMEOUT_MS).unref();

const socket = new Socket(url, { transport: WebSocket, params: { token } });
socket.connect();
const doc = new Y.Doc();
const provider = new PhoenixChannelProvider(socket, `doc:${name}`, doc, { disableBc: true });
const notes = doc.getText("notes");
const peers = () =>
  Array.from(provider.awareness.getStates().entries())
    .filter(([id]) => id !== doc.clientID)
    .map(([, state]) => state);

let appended = false;
let finished = false;
const check = () => {
  if (finished || !appended || !notes.toString().includes(waitFor)) return;
  if (!peers().some((p) => p.user === "python")) return;
  finished = true;
  report("done", { text: notes.toString(), runs: doc.getArray("runs").toJSON(), peers: peers() });
  provider.destroy();
  socket.disconnect(() => process.exit(0));
};

provider.on("synced", (synced) => {
  if (!synced || appended) return;
  report("synced", { text: notes.toString() });
  provider.awareness.setLocalState({ user: "node", cursor: notes.length });
  doc.transact(() => {
    notes.insert(notes.length, mine);
    doc.getArray("runs").push([new Y.Map(Object.entries({ id: "node-run", kernel: "hash.sha256", status: "done" }))]);
  });
  appended = true;
  check();
});
notes.observe(check);
provider.awareness.on("change", check);

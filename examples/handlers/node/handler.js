// An intent-fleet handler in plain Node.js (no dependencies).
// The sidecar POSTs each intent's payload here; see ../README.md for the contract
// and the payload knobs every example handler shares.
"use strict";

const http = require("node:http");

const LANG = "node";
const TEXT = "text/plain; charset=utf-8";
const host = process.env.HOST || "127.0.0.1";
const port = Number(process.env.PORT || 8080);
const sidecar = (process.env.INTENT_SIDECAR_URL || "http://127.0.0.1:8787").replace(/\/+$/, "");

// busy_first: intent ids already answered 503 once (bounded; a Set keeps insertion order).
const SEEN_MAX = 10000;
const seen = new Set();
function firstSighting(id) {
  if (seen.has(id)) return false;
  seen.add(id);
  if (seen.size > SEEN_MAX) seen.delete(seen.values().next().value);
  return true;
}

let draining = false;

async function publish(doc) {
  const res = await fetch(`${sidecar}/v1/publish`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(doc),
  });
  if (!res.ok) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  return String((await res.json()).id);
}

// What to say about one intent: [status, content type, body, extra headers].
async function answer(payload, id, attempt) {
  if (payload === null || typeof payload !== "object" || Array.isArray(payload)) payload = {};
  if (payload.busy_first === true && firstSighting(id)) {
    return [503, TEXT, "busy, try again\n", { "Retry-After": "1" }];
  }
  if (typeof payload.sleep === "number" && payload.sleep > 0) {
    await new Promise((resolve) => setTimeout(resolve, payload.sleep * 1000));
  }
  if ("fail" in payload) return [500, TEXT, String(payload.fail), {}];
  if ("reject" in payload) return [422, TEXT, String(payload.reject), {}];
  const name = String(payload.name ?? "world");
  if (payload.text === true) return [200, TEXT, `Hello, ${name}!`, {}];
  const result = { greeting: `Hello, ${name}!`, lang: LANG, attempt };
  if ("publish" in payload) {
    try {
      result.published = await publish(payload.publish);
    } catch (err) {
      return [502, TEXT, `publish through the sidecar failed: ${err.message}`, {}];
    }
  }
  return [200, "application/json", JSON.stringify(result), {}];
}

async function readAndAnswer(raw, id, attempt) {
  let payload = null;
  if (raw.trim()) {
    try {
      payload = JSON.parse(raw);
    } catch (err) {
      return [400, TEXT, `payload is not valid JSON: ${err.message}\n`, {}];
    }
  }
  return answer(payload, id, attempt);
}

function send(res, [status, type, body, headers]) {
  const data = Buffer.from(body);
  const extra = draining ? { Connection: "close" } : {}; // no keep-alive once stopping
  res.writeHead(status, { "Content-Type": type, "Content-Length": data.length, ...headers, ...extra });
  res.end(data);
}

const server = http.createServer((req, res) => {
  if (req.method === "GET" && req.url === "/healthz") return send(res, [200, TEXT, "ok\n", {}]);
  if (req.method !== "POST") return send(res, [404, TEXT, "not found\n", {}]);
  const started = Date.now();
  const id = req.headers["intent-id"] || "-";
  const attemptHeader = req.headers["intent-attempt"] || "0";
  const attempt = /^\d+$/.test(attemptHeader) ? Number(attemptHeader) : 0;
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    readAndAnswer(Buffer.concat(chunks).toString("utf8"), id, attempt)
      .catch((err) => [500, TEXT, `handler error: ${err.message}`, {}])
      .then((reply) => {
        const ms = Date.now() - started;
        process.stderr.write(`${LANG} handler: intent ${id} attempt ${attempt} -> ${reply[0]} (${ms} ms)\n`);
        send(res, reply);
      });
  });
});

// Keep idle connections longer than the sidecar's client pool does (15 s), so the
// handler never closes a connection the sidecar is about to reuse.
server.keepAliveTimeout = 60000;

// SIGTERM (and Ctrl-C): stop accepting, close idle keep-alive connections, let in-flight
// requests finish (their connections close after the answer), then exit 0.
function stop() {
  if (draining) return;
  draining = true;
  server.close(() => {
    process.stderr.write(`${LANG} handler stopped\n`);
    process.exit(0);
  });
  server.closeIdleConnections();
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);

server.listen(port, host, () => process.stderr.write(`${LANG} handler listening on ${host}:${port}\n`));

// An intent-fleet handler in plain Node.js (no dependencies).
// The sidecar POSTs each intent's payload here; see ../README.md for the contract
// and the payload knobs every example handler shares.
"use strict";

const http = require("node:http");

const host = process.env.HOST || "127.0.0.1";
const port = Number(process.env.PORT || 8080);
const sidecar = process.env.INTENT_SIDECAR_URL || "http://127.0.0.1:8787";
const seen = new Set();

function send(res, status, body, type, headers = {}) {
  const data = Buffer.from(body);
  res.writeHead(status, { "Content-Type": type, "Content-Length": data.length, ...headers });
  res.end(data);
}

async function publish(doc) {
  const res = await fetch(`${sidecar}/v1/publish`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(doc),
  });
  if (!res.ok) throw new Error(`publish failed: ${res.status}`);
  return (await res.json()).id;
}

async function handle(req, res, raw) {
  const id = req.headers["intent-id"] || "-";
  const attempt = Number(req.headers["intent-attempt"] || 0);
  let payload;
  try {
    payload = JSON.parse(raw || "null");
  } catch (err) {
    return send(res, 400, `payload is not valid JSON: ${err.message}\n`, "text/plain");
  }
  if (payload === null || typeof payload !== "object" || Array.isArray(payload)) payload = {};
  process.stderr.write(`node handler: intent ${id} attempt ${attempt}\n`);
  if (payload.busy_first && !seen.has(id)) {
    seen.add(id);
    return send(res, 503, "busy, try again\n", "text/plain", { "Retry-After": "1" });
  }
  seen.add(id);
  if (payload.sleep) await new Promise((r) => setTimeout(r, Number(payload.sleep) * 1000));
  if ("fail" in payload) return send(res, 500, String(payload.fail), "text/plain");
  if ("reject" in payload) return send(res, 422, String(payload.reject), "text/plain");
  const name = String(payload.name ?? "world");
  if (payload.text) return send(res, 200, `Hello, ${name}!`, "text/plain; charset=utf-8");
  const result = { greeting: `Hello, ${name}!`, lang: "node", attempt };
  if (payload.publish && typeof payload.publish === "object") {
    result.published = await publish(payload.publish);
  }
  return send(res, 200, JSON.stringify(result), "application/json");
}

const server = http.createServer((req, res) => {
  if (req.method === "GET" && req.url === "/healthz") return send(res, 200, "ok\n", "text/plain");
  if (req.method !== "POST") return send(res, 404, "not found\n", "text/plain");
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    handle(req, res, Buffer.concat(chunks).toString("utf8")).catch((err) =>
      send(res, 500, `handler error: ${err.message}`, "text/plain"),
    );
  });
});

// SIGTERM: stop accepting, let in-flight requests finish, then exit 0.
process.on("SIGTERM", () => {
  server.close(() => process.exit(0));
  server.closeIdleConnections();
});

server.listen(port, host, () => process.stderr.write(`node handler listening on ${host}:${port}\n`));

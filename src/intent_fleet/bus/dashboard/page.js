"use strict";
// Everything from the bus is shown with textContent: a payload is text, never markup.
(() => {
  const $ = (id) => document.getElementById(id);
  const POLL_MS = 1000;
  let csrf = null;
  let timer = null;
  let goals = [];
  let sort = { key: "namespace", dir: "asc" };
  let dead = [];
  let deadSeen = -1;
  const previews = new Map();
  const selected = new Set();

  // -- theme -------------------------------------------------------------------------
  const prefersDark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  const setTheme = (t) => { document.documentElement.dataset.theme = t; localStorage.setItem("theme", t); };
  setTheme(localStorage.getItem("theme") || (prefersDark ? "dark" : "light"));
  $("theme").addEventListener("click", () =>
    setTheme(document.documentElement.dataset.theme === "dark" ? "light" : "dark"));

  // -- talking to the bus --------------------------------------------------------------
  async function api(method, path, body) {
    const headers = { "X-CSRF-Token": csrf || "" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(path, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (r.status === 401) { showLogin(""); throw new Error("logged out"); }
    const doc = r.headers.get("Content-Type")?.startsWith("application/json") ? await r.json() : null;
    if (!r.ok) throw new Error(doc?.error?.message || `HTTP ${r.status}`);
    return doc;
  }

  function showLogin(message) {
    csrf = null;
    clearTimeout(timer);
    $("board").hidden = true; $("logout").hidden = true; $("login").hidden = false;
    $("login-error").textContent = message;
    $("state").textContent = "";
    $("password").focus();
  }

  function showBoard(token) {
    csrf = token;
    $("login").hidden = true; $("board").hidden = false; $("logout").hidden = false;
    tick();
  }

  $("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const r = await fetch("/admin/dashboard/login", {
      method: "POST", headers: { "Content-Type": "application/json" }, credentials: "same-origin",
      body: JSON.stringify({ password: $("password").value }),
    });
    const doc = await r.json().catch(() => null);
    $("password").value = "";
    if (r.ok) showBoard(doc.csrf_token);
    else $("login-error").textContent = doc?.error?.message || `HTTP ${r.status}`;
  });

  $("logout").addEventListener("click", async () => {
    await api("POST", "/admin/dashboard/logout").catch(() => {});
    showLogin("Logged out.");
  });

  // -- the live part ---------------------------------------------------------------------
  async function tick() {
    clearTimeout(timer);
    try {
      const o = await api("GET", "/admin/dashboard/overview");
      render(o);
      if (o.dead !== deadSeen) { deadSeen = o.dead; await loadDead(); }
      $("state").textContent = `live · storage ${o.storage} · ${new Date(o.now * 1000).toLocaleTimeString()}`;
    } catch (err) {
      if (!csrf) return;
      $("state").textContent = `not updating: ${err.message}`;
    }
    timer = setTimeout(tick, POLL_MS);
  }

  function render(o) {
    goals = o.goals;
    const sum = (k) => goals.reduce((n, g) => n + g[k], 0);
    $("f-ready").textContent = sum("ready");
    $("f-claimed").textContent = sum("claimed");
    $("f-delayed").textContent = sum("delayed");
    $("f-dead").textContent = o.dead;
    $("f-parked").textContent = o.parked_claims;
    renderGoals();
    renderWorkers(o.workers);
    drawChart(o.throughput);
  }

  function age(seconds) {
    if (!seconds) return "";
    if (seconds < 60) return `${seconds.toFixed(1)} s`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
    return `${(seconds / 3600).toFixed(1)} h`;
  }

  function cell(row, text, cls) {
    const td = row.insertCell();
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }

  function renderGoals() {
    const filter = $("goal-filter").value.trim().toLowerCase();
    const rows = goals.filter((g) => !filter || `${g.namespace}/${g.goal}`.toLowerCase().includes(filter));
    const { key, dir } = sort;
    rows.sort((a, b) => (a[key] < b[key] ? -1 : a[key] > b[key] ? 1 : 0) * (dir === "asc" ? 1 : -1));
    const body = $("goals").tBodies[0];
    body.replaceChildren();
    for (const g of rows) {
      const tr = body.insertRow();
      tr.dataset.goal = `${g.namespace}/${g.goal}`;
      cell(tr, g.namespace); cell(tr, g.goal);
      cell(tr, g.ready, "num"); cell(tr, g.delayed, "num"); cell(tr, g.claimed, "num");
      cell(tr, g.dead, "num"); cell(tr, age(g.oldest_ready_age_seconds), "num");
      cell(tr, g.fulfilled_per_minute, "num"); cell(tr, g.failed_per_minute, "num");
      tr.insertCell().append(sparkline(g.spark));
    }
    $("goals-empty").hidden = goals.length > 0;
    for (const th of $("goals").tHead.rows[0].cells) {
      if (th.dataset.key === key) th.dataset.sort = dir; else delete th.dataset.sort;
    }
  }

  function sparkline(points) {
    const canvas = document.createElement("canvas");
    canvas.className = "spark";
    canvas.width = 90; canvas.height = 20;
    canvas.setAttribute("aria-label", `fulfilled per minute: ${points.join(", ")}`);
    if (!points.length) return canvas;
    const ctx = canvas.getContext("2d");
    const peak = Math.max(1, ...points);
    ctx.strokeStyle = getComputedStyle(document.documentElement).getPropertyValue("--ok");
    ctx.beginPath();
    points.forEach((v, i) => {
      const x = (i / (points.length - 1)) * 88 + 1, y = 19 - (v / peak) * 17;
      if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
    });
    ctx.stroke();
    return canvas;
  }

  function renderWorkers(workers) {
    const body = $("workers").tBodies[0];
    body.replaceChildren();
    for (const w of workers) {
      const tr = body.insertRow();
      tr.dataset.worker = w.worker;
      cell(tr, w.worker); cell(tr, w.key_id); cell(tr, w.capabilities.join(", "));
      cell(tr, w.held, "num"); cell(tr, w.claims, "num");
      cell(tr, new Date(w.last_seen * 1000).toLocaleTimeString());
    }
    $("workers-empty").hidden = workers.length > 0;
  }

  $("goal-filter").addEventListener("input", renderGoals);
  for (const th of document.querySelectorAll("#goals th[data-key]")) {
    th.addEventListener("click", () => {
      const key = th.dataset.key;
      sort = { key, dir: sort.key === key && sort.dir === "asc" ? "desc" : "asc" };
      renderGoals();
    });
  }

  function drawChart(series) {
    const canvas = $("chart");
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth, height = 160;
    canvas.width = width * ratio; canvas.height = height * ratio;
    const ctx = canvas.getContext("2d");
    ctx.scale(ratio, ratio);
    const style = getComputedStyle(document.documentElement);
    const colours = { published: "--accent", fulfilled: "--ok", failed: "--bad" };
    const peak = Math.max(1, ...Object.values(series).flat());
    ctx.strokeStyle = style.getPropertyValue("--line");
    ctx.beginPath(); ctx.moveTo(0, height - 0.5); ctx.lineTo(width, height - 0.5); ctx.stroke();
    ctx.fillStyle = style.getPropertyValue("--muted");
    ctx.fillText(`${peak}/s`, 4, 12);
    for (const [kind, points] of Object.entries(series)) {
      ctx.strokeStyle = style.getPropertyValue(colours[kind]);
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      points.forEach((v, i) => {
        const x = (i / (points.length - 1)) * width, y = height - 2 - (v / peak) * (height - 18);
        if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      });
      ctx.stroke();
      const last = points.slice(-60).reduce((a, b) => a + b, 0);
      $(`t-${kind}`).textContent = `(${last} in the last minute)`;
    }
  }

  // -- dead letters ------------------------------------------------------------------------
  async function loadDead() {
    const doc = await api("GET", "/admin/dead?limit=200");
    dead = doc.dead;
    const ids = new Set(dead.map((d) => d.intent_id));
    for (const id of [...selected]) if (!ids.has(id)) selected.delete(id);
    renderDead();
    for (const d of dead) {
      if (previews.has(d.intent_id)) continue;
      const detail = await api("GET", `/admin/dead/${encodeURIComponent(d.intent_id)}`).catch(() => null);
      previews.set(d.intent_id, detail ? JSON.stringify(detail.payload) : "");
      renderDead();
    }
  }

  function renderDead() {
    const body = $("dead").tBodies[0];
    body.replaceChildren();
    for (const d of dead) {
      const tr = body.insertRow();
      tr.dataset.id = d.intent_id;
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = selected.has(d.intent_id);
      box.setAttribute("aria-label", `Select ${d.intent_id}`);
      box.addEventListener("change", () => {
        if (box.checked) selected.add(d.intent_id); else selected.delete(d.intent_id);
        updateActions();
      });
      tr.insertCell().append(box);
      cell(tr, d.intent_id.slice(0, 12));
      cell(tr, `${d.namespace}/${d.goal}`);
      cell(tr, d.attempts, "num");
      cell(tr, d.reason || "", "error-text").title = d.reason || "";
      cell(tr, previews.get(d.intent_id) ?? "…", "payload").title = previews.get(d.intent_id) ?? "";
      cell(tr, new Date(d.died_at * 1000).toLocaleString());
      const retry = document.createElement("button");
      retry.type = "button"; retry.textContent = "Retry"; retry.className = "retry";
      retry.addEventListener("click", () => act("retry", [d.intent_id]));
      tr.insertCell().append(retry);
    }
    $("dead-empty").hidden = dead.length > 0;
    $("dead-all").checked = dead.length > 0 && selected.size === dead.length;
    updateActions();
  }

  function updateActions() {
    $("retry-selected").disabled = selected.size === 0;
    $("cancel-selected").disabled = selected.size === 0;
  }

  $("dead-all").addEventListener("change", (e) => {
    selected.clear();
    if (e.target.checked) for (const d of dead) selected.add(d.intent_id);
    renderDead();
  });

  function confirmed(text) {
    return new Promise((resolve) => {
      const dialog = $("confirm");
      $("confirm-text").textContent = text;
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
      dialog.showModal();
    });
  }

  async function act(action, ids) {
    const many = ids.length === 1 ? "this dead letter" : `these ${ids.length} dead letters`;
    const question = action === "retry"
      ? `Retry ${many}? ${ids.length === 1 ? "It goes" : "They go"} back to ready with fresh attempts.`
      : `Cancel ${many}? ${ids.length === 1 ? "It is" : "They are"} kept as cancelled and never delivered.`;
    if (!(await confirmed(question))) return;
    const failures = [];
    for (const id of ids) {
      await api("POST", `/admin/intents/${encodeURIComponent(id)}/${action}`)
        .catch((err) => failures.push(`${id.slice(0, 12)}: ${err.message}`));
      selected.delete(id);
    }
    $("state").textContent = failures.length ? `some failed: ${failures.join("; ")}` : `${action} done`;
    deadSeen = -1;
    tick();
  }

  $("retry-selected").addEventListener("click", () => act("retry", [...selected]));
  $("cancel-selected").addEventListener("click", () => act("cancel", [...selected]));

  // -- lookup ---------------------------------------------------------------------------------
  $("lookup-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const id = $("lookup-id").value.trim();
    try {
      const doc = await api("GET", `/admin/intents/${encodeURIComponent(id)}`);
      $("lookup-result").textContent = JSON.stringify(doc, null, 2);
    } catch (err) {
      $("lookup-result").textContent = err.message;
    }
  });

  // -- start: a session this browser already holds, or the login form ---------------------------
  fetch("/admin/dashboard/session", { credentials: "same-origin" })
    .then((r) => (r.ok ? r.json() : null))
    .then((doc) => (doc ? showBoard(doc.csrf_token) : showLogin("")))
    .catch(() => showLogin(""));
})();

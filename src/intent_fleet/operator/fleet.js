"use strict";
// Read-only; every value is set as text.
(() => {
  const POLL_MS = 2000;
  // The status each condition has when all is well; any other is shown as a problem.
  const WANTED = { Ready: "True", BacklogAvailable: "True", ScalingLimited: "False" };
  const $ = (id) => document.getElementById(id);
  const cards = new Map();

  function card(key) {
    let found = cards.get(key);
    if (!found) {
      found = $("worker").content.firstElementChild.cloneNode(true);
      found.dataset.worker = key;
      $("workers").append(found);
      cards.set(key, found);
    }
    return found;
  }

  const text = (root, cls, value) => { root.querySelector(`.${cls}`).textContent = value ?? "–"; };

  function draw(canvas, points, now, span) {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth, height = 120;
    canvas.width = width * ratio; canvas.height = height * ratio;
    const ctx = canvas.getContext("2d");
    ctx.scale(ratio, ratio);
    const css = getComputedStyle(document.documentElement);
    const peak = Math.max(1, ...points.map((p) => Math.max(p[1], p[2])));
    const x = (t) => width - ((now - t) / span) * width;
    const y = (v) => height - 2 - (v / peak) * (height - 16);
    ctx.fillStyle = css.getPropertyValue("--muted");
    ctx.fillText(`${peak}`, 4, 11);
    for (const [index, colour, step] of [[1, "--accent", false], [2, "--ok", true]]) {
      ctx.strokeStyle = css.getPropertyValue(colour);
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      points.forEach((p, i) => {
        if (!i) { ctx.moveTo(x(p[0]), y(p[index])); return; }
        if (step) ctx.lineTo(x(p[0]), y(points[i - 1][index]));
        ctx.lineTo(x(p[0]), y(p[index]));
      });
      ctx.stroke();
      const last = points[points.length - 1];
      if (last) {  // the newest reading, visible even before there is a line
        ctx.fillStyle = css.getPropertyValue(colour);
        ctx.beginPath();
        ctx.arc(Math.min(x(last[0]), width - 3), y(last[index]), 3, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
  }

  function render(doc) {
    const seen = new Set();
    for (const w of doc.workers) {
      const key = `${w.namespace}/${w.name}`;
      seen.add(key);
      const root = card(key);
      text(root, "name", key);
      text(root, "goal", `goal ${w.goal}`);
      text(root, "backlog", w.backlog);
      text(root, "in-flight", w.in_flight);
      text(root, "desired", w.desired);
      text(root, "replicas", w.replicas);
      text(root, "ready", w.ready);
      const conditions = root.querySelector(".conditions");
      conditions.replaceChildren(...w.conditions.map((c) => {
        const li = document.createElement("li");
        li.textContent = `${c.type}: ${c.status}${c.reason ? ` (${c.reason})` : ""}`;
        li.title = c.message || "";
        if (WANTED[c.type] && WANTED[c.type] !== c.status) li.className = "false";
        return li;
      }));
      const events = root.querySelector(".events");
      events.replaceChildren(...w.events.map((e) => {
        const li = document.createElement("li");
        li.textContent = `${new Date(e.time * 1000).toLocaleTimeString()}: ${e.from} → ${e.to} (${e.reason})`;
        return li;
      }));
      if (!w.events.length) events.replaceChildren(Object.assign(document.createElement("li"), { textContent: "none yet" }));
      draw(root.querySelector("canvas"), w.points, doc.now, doc.history_seconds);
    }
    for (const [key, root] of cards) if (!seen.has(key)) { root.remove(); cards.delete(key); }
    $("empty").hidden = doc.workers.length > 0;
  }

  async function tick() {
    try {
      const r = await fetch("/fleet.json", { cache: "no-store" });
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      const doc = await r.json();
      render(doc);
      $("state").textContent = `${doc.role} · updated ${new Date(doc.now * 1000).toLocaleTimeString()}`;
    } catch (err) {
      $("state").textContent = `not updating: ${err.message}`;
    }
    setTimeout(tick, POLL_MS);
  }
  tick();
})();

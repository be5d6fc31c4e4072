// Membrane's Hubble UI: polls the local server's JSON API and draws the service map and the flow table.
"use strict";
const SVG = "http://www.w3.org/2000/svg";
const W = 1000, H = 560, BOX_W = 150, BOX_H = 44;
const state = { namespace: new URLSearchParams(location.search).get("namespace") || "", verdict: "", search: "" };

async function getJSON(path) {
  const resp = await fetch(path, { cache: "no-store" });
  const body = await resp.json();
  if (!resp.ok) throw new Error(body.error || resp.statusText);
  return body;
}

function el(name, attrs, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// Stable layout: workloads and services on an ellipse in id order, reserved ends (world, host…) on the right.
function layout(nodes) {
  const pos = {};
  const inner = nodes.filter(n => n.kind !== "reserved" && n.kind !== "ip");
  const outer = nodes.filter(n => n.kind === "reserved" || n.kind === "ip");
  inner.forEach((n, i) => {
    const a = (2 * Math.PI * i) / Math.max(inner.length, 1) - Math.PI / 2;
    pos[n.id] = { x: 400 + 300 * Math.cos(a), y: H / 2 + 200 * Math.sin(a) };
  });
  outer.forEach((n, i) => { pos[n.id] = { x: W - 100, y: 60 + i * ((H - 120) / Math.max(outer.length - 1, 1)) }; });
  return pos;
}

function clip(p, q) { // the point where the segment p→q leaves q's box
  const dx = p.x - q.x, dy = p.y - q.y;
  const s = Math.min(Math.abs((BOX_W / 2) / (dx || 1e-9)), Math.abs((BOX_H / 2) / (dy || 1e-9)));
  return { x: q.x + dx * Math.min(s, 1), y: q.y + dy * Math.min(s, 1) };
}

function drawMap(data) {
  const nodesG = document.getElementById("nodes"), edgesG = document.getElementById("edges");
  nodesG.replaceChildren(); edgesG.replaceChildren();
  const pos = layout(data.nodes);
  const pairs = {};
  for (const e of data.edges) { // one line per (source, target): dropped wins, ports joined
    const key = e.source + "\u0000" + e.target;
    const cur = pairs[key] || (pairs[key] = { source: e.source, target: e.target, verdict: "forwarded", ports: [] });
    if (e.verdict === "dropped") cur.verdict = "dropped";
    if (e.port && !cur.ports.includes(e.port)) cur.ports.push(e.port);
  }
  for (const e of Object.values(pairs)) {
    const a = pos[e.source], b = pos[e.target];
    if (!a || !b) continue;
    const from = clip(b, a), to = clip(a, b);
    edgesG.appendChild(el("line", { x1: from.x, y1: from.y, x2: to.x, y2: to.y, class: `edge ${e.verdict}`,
      "data-source": e.source, "data-target": e.target, "marker-end": `url(#arrow-${e.verdict})` }));
    edgesG.appendChild(el("text", { x: (from.x + to.x) / 2, y: (from.y + to.y) / 2 - 6, class: "edge-label" },
      e.ports.slice(0, 3).join(", ")));
  }
  for (const n of data.nodes) {
    const p = pos[n.id];
    const g = el("g", { class: `node ${n.kind}`, "data-id": n.id, transform: `translate(${p.x},${p.y})` });
    g.appendChild(el("rect", { x: -BOX_W / 2, y: -BOX_H / 2, width: BOX_W, height: BOX_H }));
    g.appendChild(el("text", { y: n.namespace ? -6 : 0 }, n.label));
    if (n.namespace) g.appendChild(el("text", { y: 11, class: "ns" }, n.namespace));
    nodesG.appendChild(g);
  }
}

function drawFlows(rows) {
  const body = document.querySelector("#flows tbody");
  body.replaceChildren();
  const needle = state.search.toLowerCase();
  for (const r of rows) {
    if (needle && !Object.values(r).join(" ").toLowerCase().includes(needle)) continue;
    const tr = document.createElement("tr");
    for (const key of ["time", "source", "destination", "type", "verdict", "summary"]) {
      const td = document.createElement("td");
      td.textContent = r[key];
      if (key === "verdict") td.className = `verdict ${r.verdict_class}`;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

async function loadNamespaces() {
  const sel = document.getElementById("namespace");
  const { namespaces } = await getJSON("/api/namespaces");
  for (const ns of namespaces) {
    if ([...sel.options].some(o => o.value === ns)) continue;
    sel.appendChild(new Option(ns, ns));
  }
  sel.value = state.namespace;
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const q = `namespace=${encodeURIComponent(state.namespace)}`;
    const [map, flows] = await Promise.all([
      getJSON(`/api/map?${q}`),
      getJSON(`/api/flows?${q}&limit=200&verdict=${encodeURIComponent(state.verdict)}`),
    ]);
    drawMap(map);
    drawFlows(flows.flows);
    await loadNamespaces();
    status.textContent = `${map.nodes.length} nodes, ${map.edges.length} edges · ${new Date().toLocaleTimeString()}`;
    document.body.dataset.loaded = "1";
  } catch (err) {
    status.textContent = `error: ${err.message}`;
  }
}

document.getElementById("namespace").addEventListener("change", e => { state.namespace = e.target.value; refresh(); });
document.getElementById("verdict").addEventListener("change", e => { state.verdict = e.target.value; refresh(); });
document.getElementById("search").addEventListener("input", e => { state.search = e.target.value; refresh(); });
refresh();
setInterval(refresh, 2000);

// Spillway's live dashboard: the control API's own JSON (with the token given at login) and
// /metrics, polled every second; each buyer's chart (an SVG the server draws) every 5 s.
"use strict";

const TOKEN_KEY = "spillway-token";
const $ = (sel) => document.querySelector(sel);
let lastXdp = null;
let lastCharts = 0;
let role = null;

function token() { return sessionStorage.getItem(TOKEN_KEY); }

async function api(path, accept) {
  const r = await fetch(path, { headers: { Authorization: "Bearer " + token(), Accept: accept || "application/json" } });
  if (r.status === 401) { logout(); throw new Error("the token is not valid"); }
  if (!r.ok) { const e = new Error(path + ": " + r.status); e.status = r.status; throw e; }
  return accept ? r.text() : r.json();
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "–" : String(text);
  if (cls) td.className = cls;
  return td;
}

function fill(table, rows, make) {
  const body = $(table + " tbody");
  body.replaceChildren(...rows.map((row) => {
    const tr = document.createElement("tr");
    make(tr, row);
    return tr;
  }));
}

const depth = (levels) => levels.reduce((n, l) => n + l.quantity_rps, 0);
const num = (v, digits) => (v === null || v === undefined ? null : Number(v).toFixed(digits));
const when = (t) => new Date(t * 1000).toLocaleTimeString();

async function customers() {
  const list = (await api("/v1/customers")).customers;
  fill("#customers", list, (tr, c) => {
    tr.dataset.customer = c.id;
    const ctl = c.controller || {};
    tr.append(cell(c.id), cell(c.mode), cell(num(c.fraction, 2), "fraction"), cell(c.contracted_rps),
      cell(num(ctl.served_rps, 1)), cell(num(ctl.setpoint_rps, 1)));
  });
  if (Date.now() - lastCharts > 5000) {
    lastCharts = Date.now();
    const figs = await Promise.all(list.map(async (c) => {
      const fig = document.createElement("figure");
      fig.dataset.customer = c.id;
      fig.innerHTML = await api("/v1/customers/" + encodeURIComponent(c.id) + "/history/chart", "image/svg+xml");
      return fig;
    }));
    $("#charts").replaceChildren(...figs);
  }
}

async function contracts() {
  const now = Date.now() / 1000;
  const list = (await api("/v1/contracts")).contracts.filter((c) => c.period_end > now);
  fill("#contracts", list, (tr, c) => {
    tr.append(cell(c.id), cell(c.customer), cell(when(c.period_start) + "–" + when(c.period_end)), cell(c.rps),
      cell(c.price), cell(c.source), cell(c.period_start <= now ? "in force" : "upcoming"));
  });
}

async function market() {
  let periods;
  try { periods = (await api("/v1/capacity?periods=4")).periods; } catch (e) { if (e.status === 409) return; throw e; }
  const books = await Promise.all(periods.map((p) => api("/v1/book/" + p.period_start).catch(() => null)));
  fill("#periods", periods, (tr, p) => {
    const b = books[periods.indexOf(p)] || { bids: [], asks: [] };
    tr.append(cell(when(p.period_start)), cell(p.capacity_rps), cell(p.forecast_own_rps), cell(p.sold_rps),
      cell(p.available_rps), cell(depth(b.bids)), cell(depth(b.asks)));
  });
  const auctions = (await api("/v1/auctions")).auctions.filter((a) => a.state === "open");
  fill("#auctions", auctions, (tr, a) => {
    tr.append(cell(a.id), cell(when(a.period_start)), cell(when(a.closes_at)), cell(a.quantity_rps), cell(a.reserve_price), cell(a.state));
  });
}

async function proxies() {
  // The fleet is the operator's: a buyer's page has no proxies section.
  $("#proxies-section").hidden = role !== "operator";
  if (role !== "operator") return;
  const list = (await api("/v1/proxies")).proxies;
  fill("#proxies", list, (tr, p) => {
    tr.dataset.proxy = p.name;
    tr.append(cell(p.name), cell(p.status, p.status === "answering" ? "" : "down"), cell(p.capacity_rps),
      cell(num(p.load_rps, 1)), cell(p.check_up === null ? "none" : (p.check_up ? "up" : "down")), cell(p.source));
  });
}

async function xdp() {
  const text = await (await fetch("/metrics")).text();
  const totals = {};
  for (const line of text.split("\n")) {
    const m = line.match(/^spillway_xdp_packets_total\{outcome="([^"]+)"\} (\d+)/);
    if (m) totals[m[1]] = Number(m[2]);
  }
  const now = Date.now();
  const rows = Object.keys(totals).filter((k) => totals[k] > 0).sort();
  fill("#xdp", rows, (tr, k) => {
    const rate = lastXdp && lastXdp.totals[k] !== undefined ? (totals[k] - lastXdp.totals[k]) / ((now - lastXdp.at) / 1000) : null;
    tr.append(cell(k), cell(num(rate, 1)), cell(totals[k]));
  });
  lastXdp = { at: now, totals };
}

async function refresh() {
  if (!token()) return;
  try {
    if (role === null) {
      const s = await api("/v1/session");
      role = s.role;
      $("#who").textContent = s.role === "operator" ? "operator" : "buyer " + s.customer;
    }
    await Promise.all([customers(), contracts(), market(), proxies(), xdp()]);
    $("#updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    $("#updated").textContent = "not updated: " + e.message;
  }
}

function show() {
  const signedIn = !!token();
  $("#login").hidden = signedIn;
  $("#app").hidden = !signedIn;
  $("#logout").hidden = !signedIn;
}

function logout() {
  sessionStorage.removeItem(TOKEN_KEY);
  role = null;
  show();
}

$("#login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("#token").value);
  try {
    role = null;
    await api("/v1/session");
    $("#login-error").textContent = "";
    lastCharts = 0;
    show();
    refresh();
  } catch (e) {
    sessionStorage.removeItem(TOKEN_KEY);
    $("#login-error").textContent = e.message;
  }
});
$("#logout").addEventListener("click", logout);
show();
refresh();
setInterval(refresh, 1000);

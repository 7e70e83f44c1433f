"use strict";
// Each panel: fetch /api/<panel>, render a table, load its plot; data-status = ok | empty | error.
// data.note (one line from the server) says what is shown or why the panel is empty.
const errors = [];
window.addEventListener("error", (e) => { errors.push(String(e.message)); showErrors(); });
function showErrors() { document.getElementById("errors").textContent = errors.join("; "); }

function fmt(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(4);
  return String(v);
}

function table(el, rows) {
  el.textContent = "";
  if (!rows.length) return;
  const cols = Object.keys(rows[0]);
  const head = el.insertRow();
  cols.forEach((c) => { const th = document.createElement("th"); th.textContent = c; head.appendChild(th); });
  rows.forEach((r) => { const tr = el.insertRow(); cols.forEach((c) => { tr.insertCell().textContent = fmt(r[c]); }); });
}

function rowsOf(panel, data) {
  switch (panel) {
    case "rolling":
      return Object.keys(data.latest).length
        ? Object.entries(data.latest).filter(([k]) => k !== "timestamp")
            .map(([k, v]) => ({ metric: k, value: v }))
            .concat([{ metric: "acc recent 50", value: data.acc_recent }, { metric: "acc prior 150", value: data.acc_prior }])
        : [];
    case "confidence":
      return data.n ? data.hist : [];
    default:
      return data.rows || [];
  }
}

function loadImage(img) {
  return new Promise((resolve) => {
    if (!img) return resolve(true);
    img.onload = () => resolve(img.naturalWidth > 0);
    img.onerror = () => resolve(false);
    img.src = "/plot/" + img.dataset.plot + ".png?t=" + Date.now();
  });
}

async function loadPanel(panel) {
  const section = document.getElementById("panel-" + panel);
  try {
    const resp = await fetch("/api/" + panel);
    if (!resp.ok) throw new Error(panel + ": HTTP " + resp.status);
    const data = await resp.json();
    const rows = rowsOf(panel, data);
    table(section.querySelector("table"), rows);
    if (panel === "registry") document.getElementById("deployed").textContent = "deployed model: " + fmt(data.deployed);
    if (panel === "importance") section.querySelector(".source").textContent = "shown: " + data.label;
    if (panel === "live") table(section.querySelector("table.guards"), data.guards || []);
    if (panel === "paper" && data.state) {
      section.querySelector(".state").textContent =
        "run " + data.state.name + ", last bar " + data.state.last_bar + ", cash " + fmt(data.state.cash) + ", orders " + data.n_orders;
    }
    const note = data.note || (rows.length ? "" : "no data (the server gave no reason)");
    section.querySelector(".note").textContent = note;
    section.dataset.source = data.source || "";
    const imgOk = await loadImage(section.querySelector("img"));
    if (!imgOk) throw new Error(panel + ": plot failed to load");
    section.dataset.rows = String(rows.length);
    section.dataset.status = rows.length ? "ok" : "empty";
  } catch (err) {
    section.dataset.status = "error";
    errors.push(String(err));
    showErrors();
  }
}

const PANELS = ["backtest", "registry", "predictions", "rolling", "importance", "confidence", "signals", "paper", "live"];
Promise.all(PANELS.map(loadPanel)).then(() => { document.body.dataset.ready = "yes"; });

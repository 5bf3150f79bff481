// The node dashboard: polls api/state, draws facts, charts and tables; operator actions need the token.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = "cocoon-operator-token";
  let pollMs = 2000;
  let pollOverride = 0; // ?every=SECONDS in the address: poll that often instead of the node's pace
  let timer = null;

  function ago(seconds) {
    if (seconds < 0) return "in " + ago(-seconds).replace(/ ago$/, "");
    if (seconds < 90) return `${Math.round(seconds)} s ago`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
    if (seconds < 172800) return `${Math.round(seconds / 3600)} h ago`;
    return `${Math.round(seconds / 86400)} d ago`;
  }

  function isoLocal(t) {
    const d = new Date(t * 1000);
    const pad = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function ton(nano) {
    const text = (Number(nano) / 1e9).toFixed(9).replace(/\.?0+$/, "");
    return `${text} TON`;
  }

  // One cell ({v, k}) as a DOM node, formatted by its kind.
  function render(cell, now) {
    const span = document.createElement("span");
    const v = cell.v;
    if (v === null || v === undefined || v === "") { span.textContent = "—"; span.className = "muted"; return span; }
    switch (cell.k) {
      case "time":
        span.textContent = `${isoLocal(v)} (${ago(now - v)})`;
        span.title = `Unix time ${v}`;
        break;
      case "ton": span.textContent = ton(v); break;
      case "hash": span.textContent = String(v); span.className = "mono"; break;
      case "number": span.textContent = typeof v === "number" ? window.CocoonChart.formatNumber(v) : String(v); break;
      case "ok": case "bad": case "warn": span.textContent = String(v); span.className = `badge ${cell.k}`; break;
      default: span.textContent = String(v);
    }
    return span;
  }

  function renderFacts(state) {
    const box = $("facts");
    box.replaceChildren();
    for (const [label, value] of state.facts) {
      const dl = document.createElement("dl");
      dl.className = "fact";
      const dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = label;
      dd.append(render(value, state.time));
      dl.append(dt, dd);
      box.append(dl);
    }
  }

  function renderCharts(state) {
    const box = $("charts");
    for (const chart of state.charts) {
      let card = document.getElementById(`chart-${chart.id}`);
      if (!card) {
        card = document.createElement("section");
        card.className = "card chart";
        card.id = `chart-${chart.id}`;
        const h = document.createElement("h2");
        h.textContent = chart.unit ? `${chart.title} (${chart.unit})` : chart.title;
        const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
        const legend = document.createElement("div");
        legend.className = "legend";
        card.append(h, svg, legend);
        box.append(card);
      }
      window.CocoonChart.draw(card.querySelector("svg"), chart);
      window.CocoonChart.legend(card.querySelector(".legend"), chart);
    }
  }

  function actionButton(action, target) {
    const button = document.createElement("button");
    button.textContent = action.label;
    button.dataset.action = action.name;
    button.disabled = !token();
    button.title = token() ? "" : "enter the operator token to act";
    button.addEventListener("click", () => runAction(action, target));
    return button;
  }

  function renderTables(state) {
    const box = $("tables");
    box.replaceChildren();
    const byName = Object.fromEntries(state.actions.map((a) => [a.name, a]));
    for (const table of state.tables) {
      const card = document.createElement("section");
      card.className = "card";
      card.id = `table-${table.id}`;
      const h = document.createElement("h2");
      h.textContent = table.title;
      card.append(h);
      if (table.rows.length === 0) {
        const p = document.createElement("p");
        p.className = "muted";
        p.textContent = table.empty;
        card.append(p);
        box.append(card);
        continue;
      }
      const hasActions = table.rows.some((r) => r.actions.length);
      const t = document.createElement("table");
      const head = t.createTHead().insertRow();
      for (const name of [...table.columns, ...(hasActions ? [""] : [])]) {
        const th = document.createElement("th");
        th.textContent = name;
        head.append(th);
      }
      const body = t.createTBody();
      for (const row of table.rows) {
        const tr = body.insertRow();
        if (row.key) tr.dataset.key = row.key;
        for (const c of row.cells) {
          const td = tr.insertCell();
          if (c.k === "number" || c.k === "ton") td.className = "num";
          td.append(render(c, state.time));
        }
        if (hasActions) {
          const td = tr.insertCell();
          for (const name of row.actions) if (byName[name]) td.append(actionButton(byName[name], row.key));
        }
      }
      card.append(t);
      box.append(card);
    }
  }

  function renderNodeActions(state) {
    const box = $("node-actions");
    box.replaceChildren();
    if (!state.operator_actions) return;
    for (const action of state.actions) if (action.table === null) box.append(actionButton(action, ""));
  }

  function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

  function showResult(text, failed) {
    const p = $("result");
    p.textContent = text;
    p.className = failed ? "result failed" : "result";
    p.hidden = false;
  }

  async function runAction(action, target) {
    if (action.prompt) {
      const given = window.prompt(action.prompt, "");
      if (given === null) return;
      target = given.trim();
    }
    if (action.confirm && !window.confirm(action.confirm.replace("{target}", target))) return;
    try {
      const answer = await fetch(`api/actions/${encodeURIComponent(action.name)}`, {
        method: "POST",
        headers: { "authorization": `Bearer ${token()}`, "content-type": "application/json" },
        body: JSON.stringify({ target }),
      });
      const body = await answer.json();
      if (answer.ok) showResult(body.message, false);
      else showResult(`${action.label} refused (${answer.status}): ${body.error ? body.error.message : ""}`, true);
    } catch (exc) {
      showResult(`${action.label} failed: ${exc}`, true);
    }
    refresh();
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const answer = await fetch("api/state", { cache: "no-store" });
      if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
      const state = await answer.json();
      pollMs = pollOverride || Math.max(250, (state.poll_s || 2) * 1000);
      document.title = `${state.title} — cocoon ${state.role}`;
      $("title").textContent = state.title;
      $("role").textContent = state.role;
      $("updated").textContent = `updated ${isoLocal(state.time)}`;
      renderFacts(state);
      renderNodeActions(state);
      renderCharts(state);
      renderTables(state);
      $("banner").hidden = true;
      document.body.dataset.ready = "1";
    } catch (exc) {
      $("banner").textContent = `cannot read this node's state: ${exc.message}`;
      $("banner").hidden = false;
    }
    timer = setTimeout(refresh, pollMs);
  }

  function start() {
    const input = $("token");
    input.value = token();
    input.addEventListener("input", () => {
      if (input.value) sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      else sessionStorage.removeItem(TOKEN_KEY);
      refresh();
    });
    $("operator").addEventListener("submit", (event) => event.preventDefault());
    const every = Number(new URLSearchParams(location.search).get("every"));
    if (every > 0) pollOverride = pollMs = Math.max(100, every * 1000);
    refresh();
  }

  document.addEventListener("DOMContentLoaded", start);
})();

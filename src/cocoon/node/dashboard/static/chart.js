// A small self-written SVG line chart: time on x, one polyline per series, three y ticks, a legend.
"use strict";
(function () {
  const NS = "http://www.w3.org/2000/svg";
  const H = 190, PAD_L = 56, PAD_R = 10, PAD_T = 10, PAD_B = 24;

  function el(name, attrs, text) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function niceMax(value) {
    if (!(value > 0)) return 1;
    const step = Math.pow(10, Math.floor(Math.log10(value)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= value) return m * step;
    return 10 * step;
  }

  function formatNumber(v) {
    if (v === 0) return "0";
    const a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toFixed(1) + "G";
    if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
    if (a >= 100) return v.toFixed(0);
    if (a >= 1) return v.toFixed(2).replace(/\.?0+$/, "");
    return v.toPrecision(2);
  }

  function clock(t) {
    return new Date(t * 1000).toLocaleTimeString([], { hour12: false });
  }

  // Draw `chart` ({title, unit, series: [{label, points: [[t, v], ...]}]}) into `svg`, replacing it.
  function draw(svg, chart) {
    const W = Math.max(svg.clientWidth || 0, 320);
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.replaceChildren();
    const all = chart.series.flatMap((s) => s.points);
    svg.dataset.points = String(all.length);
    const plotW = W - PAD_L - PAD_R, plotH = H - PAD_T - PAD_B;
    svg.append(el("line", { class: "axis", x1: PAD_L, y1: PAD_T + plotH, x2: W - PAD_R, y2: PAD_T + plotH }));
    if (all.length === 0) {
      svg.append(el("text", { class: "empty", x: PAD_L + 8, y: PAD_T + plotH / 2 }, "waiting for data…"));
      return;
    }
    const t0 = Math.min(...all.map((p) => p[0])), t1 = Math.max(...all.map((p) => p[0]));
    const top = niceMax(Math.max(...all.map((p) => p[1])));
    const x = (t) => PAD_L + (t1 > t0 ? ((t - t0) / (t1 - t0)) * plotW : plotW);
    const y = (v) => PAD_T + plotH - (Math.max(v, 0) / top) * plotH;
    for (const frac of [0, 0.5, 1]) {
      const v = top * frac, yy = y(v);
      svg.append(el("line", { class: "axis", x1: PAD_L, y1: yy, x2: W - PAD_R, y2: yy, "stroke-dasharray": "2 4" }));
      svg.append(el("text", { class: "tick", x: PAD_L - 6, y: yy + 4, "text-anchor": "end" }, formatNumber(v)));
    }
    const ticks = t1 > t0 ? [t0, (t0 + t1) / 2, t1] : [t1];
    ticks.forEach((t, i) => {
      const anchor = ticks.length === 1 ? "end" : ["start", "middle", "end"][i];
      svg.append(el("text", { class: "tick", x: x(t), y: H - 6, "text-anchor": anchor }, clock(t)));
    });
    chart.series.forEach((s, i) => {
      if (s.points.length === 0) return;
      const pts = s.points.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`);
      if (s.points.length === 1) pts.unshift(`${PAD_L},${y(s.points[0][1]).toFixed(1)}`);
      svg.append(el("polyline", { class: `c${i % 6}`, points: pts.join(" "), "data-series": s.label }));
    });
  }

  function legend(box, chart) {
    box.replaceChildren();
    chart.series.forEach((s, i) => {
      const item = document.createElement("span");
      const swatch = document.createElement("span");
      swatch.className = `swatch c${i % 6}`;
      const last = s.points.length ? formatNumber(s.points[s.points.length - 1][1]) : "–";
      item.append(swatch, `${s.label}: ${last}${chart.unit ? " " + chart.unit : ""}`);
      box.append(item);
    });
  }

  window.CocoonChart = { draw, legend, formatNumber };
})();

// Hand-written inline SVG charts: lines/areas over time buckets and horizontal bars. Every chart
// carries a <title>/<desc> (role="img") and a data table fallback in a <details>; every label is
// text content, never markup.

import { el, svg, uniqueId, table } from "./ui.js";

const W = 640;
const H = 220;
const M = { top: 14, right: 14, bottom: 30, left: 64 };

/** A "nice" axis for values up to `max`: a step of 1, 2 or 5 times a power of ten (whole numbers
 * only for counts), the top a multiple of it, about four steps. */
function niceScale(max, integer) {
  const target = max > 0 ? max : 1;
  const raw = target / 4;
  const exp = Math.floor(Math.log10(raw));
  const base = 10 ** exp;
  let step = [1, 2, 5, 10].map((m) => m * base).find((s) => s >= raw);
  if (integer && step < 1) step = 1;
  const top = Math.max(step, step * Math.ceil(target / step - 1e-9));
  return { top, step, ticks: Math.round(top / step) };
}

function bucketLabel(iso, bucket) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const pad = (n) => String(n).padStart(2, "0");
  const day = `${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  return bucket === "day" ? day : `${day} ${pad(d.getHours())}:00`;
}

function fallbackTable(caption, columns, rows) {
  return el("details", { class: "chart-data" },
    el("summary", null, "Show the data as a table"),
    table({ caption, columns, rows, label: `${caption} (data)` }));
}

/**
 * timeChart({title, points: [{start, ...}], series: [{name, value: point => number}], format, bucket})
 * -> <figure> with an SVG line chart (the first series also drawn as an area) and a data table.
 */
export function timeChart({ title, points, series, format = String, bucket = "hour", id, integer = false }) {
  const titleId = uniqueId("chart-title");
  const descId = uniqueId("chart-desc");
  const figure = el("figure", { class: "chart", id });
  figure.appendChild(el("figcaption", { class: "chart-title" }, title));
  if (!points.length) {
    figure.appendChild(el("p", { class: "chart-empty" }, "No data in this period."));
    return figure;
  }
  const values = series.map((s) => points.map((p) => Number(s.value(p)) || 0));
  const scale = niceScale(Math.max(0, ...values.flat()), integer);
  const max = scale.top;
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const n = points.length;
  const x = (i) => M.left + (n === 1 ? plotW / 2 : (i * plotW) / (n - 1));
  const y = (v) => M.top + plotH - (v / max) * plotH;

  const totals = series.map((s, k) => `${s.name}: total ${format(values[k].reduce((a, b) => a + b, 0))}, peak ${format(Math.max(...values[k]))}`);
  const desc = `${n} ${bucket === "day" ? "daily" : "hourly"} buckets from ${bucketLabel(points[0].start, bucket)} to ${bucketLabel(points[n - 1].start, bucket)}. ${totals.join("; ")}.`;

  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": `${titleId} ${descId}`, class: "chart-svg" },
    svg("title", { id: titleId }, title),
    svg("desc", { id: descId }, desc));

  // grid and y axis labels
  for (let t = 0; t <= scale.ticks; t += 1) {
    const v = scale.step * t;
    const yy = y(v);
    chart.appendChild(svg("line", { x1: M.left, x2: W - M.right, y1: yy, y2: yy, class: t === 0 ? "axis" : "grid" }));
    chart.appendChild(svg("text", { x: M.left - 6, y: yy + 4, class: "tick", "text-anchor": "end" }, format(v)));
  }
  // x labels: about six, evenly spread
  const step = Math.max(1, Math.ceil(n / 6));
  for (let i = 0; i < n; i += step) {
    chart.appendChild(svg("text", { x: x(i), y: H - 8, class: "tick", "text-anchor": "middle" }, bucketLabel(points[i].start, bucket)));
  }

  series.forEach((s, k) => {
    const coords = values[k].map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`);
    if (k === 0 && n > 1) {
      const base = y(0).toFixed(1);
      chart.appendChild(svg("polygon", { points: `${x(0).toFixed(1)},${base} ${coords.join(" ")} ${x(n - 1).toFixed(1)},${base}`,
                                         class: `area series-${k}` }));
    }
    chart.appendChild(svg("polyline", { points: coords.join(" "), class: `line series-${k}` }));
    if (n <= 60 || n === 1) {
      values[k].forEach((v, i) => {
        chart.appendChild(svg("circle", { cx: x(i), cy: y(v), r: 2.5, class: `dot series-${k}` },
          svg("title", null, `${bucketLabel(points[i].start, bucket)} — ${s.name}: ${format(v)}`)));
      });
    }
  });
  figure.appendChild(chart);

  if (series.length > 1) {
    figure.appendChild(el("ul", { class: "legend", "aria-hidden": "true" },
      series.map((s, k) => el("li", null, el("span", { class: `swatch series-${k}` }), s.name))));
  }
  figure.appendChild(fallbackTable(title, [
    { label: bucket === "day" ? "Day" : "Hour", value: (p) => bucketLabel(p.start, bucket) },
    ...series.map((s) => ({ label: s.name, value: (p) => format(Number(s.value(p)) || 0), className: "num" })),
  ], points));
  return figure;
}

/**
 * barChart({title, items: [{label, value}], format}) -> <figure> with horizontal SVG bars (largest first)
 * and a data table.
 */
export function barChart({ title, items, format = String, id }) {
  const titleId = uniqueId("chart-title");
  const descId = uniqueId("chart-desc");
  const figure = el("figure", { class: "chart", id });
  figure.appendChild(el("figcaption", { class: "chart-title" }, title));
  const sorted = [...items].map((it) => ({ label: String(it.label), value: Number(it.value) || 0 }))
    .sort((a, b) => b.value - a.value);
  if (!sorted.length) {
    figure.appendChild(el("p", { class: "chart-empty" }, "No data in this period."));
    return figure;
  }
  const labelW = 150;
  const row = 24;
  const top = 6;
  const height = top * 2 + sorted.length * row;
  const max = niceScale(Math.max(0, ...sorted.map((i) => i.value)), false).top;
  const plotW = W - labelW - 90;
  const desc = sorted.map((i) => `${i.label}: ${format(i.value)}`).join("; ");
  const chart = svg("svg", { viewBox: `0 0 ${W} ${height}`, role: "img", "aria-labelledby": `${titleId} ${descId}`, class: "chart-svg" },
    svg("title", { id: titleId }, title),
    svg("desc", { id: descId }, desc));
  sorted.forEach((item, i) => {
    const yy = top + i * row;
    const w = Math.max(item.value > 0 ? 2 : 0, (item.value / max) * plotW);
    const label = item.label.length > 22 ? `${item.label.slice(0, 21)}…` : item.label;
    chart.appendChild(svg("text", { x: labelW - 8, y: yy + row / 2 + 4, class: "tick", "text-anchor": "end" }, label));
    chart.appendChild(svg("rect", { x: labelW, y: yy + 4, width: w.toFixed(1), height: row - 8, rx: 2, class: "bar series-0" },
      svg("title", null, `${item.label}: ${format(item.value)}`)));
    chart.appendChild(svg("text", { x: labelW + w + 6, y: yy + row / 2 + 4, class: "tick value" }, format(item.value)));
  });
  figure.appendChild(chart);
  figure.appendChild(fallbackTable(title, [
    { label: "Name", value: (i) => i.label },
    { label: "Value", value: (i) => format(i.value), className: "num" },
  ], sorted));
  return figure;
}

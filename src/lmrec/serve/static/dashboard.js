// The dashboard: events per minute, what is served (model version, A/B arms), online metrics per arm.
"use strict";

const $ = (id) => document.getElementById(id);

async function get(path) {
  const response = await fetch(path);
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

function table(node, header, rows) {
  node.replaceChildren();
  const head = document.createElement("tr");
  for (const h of header) { const th = document.createElement("th"); th.textContent = h; head.append(th); }
  node.append(head);
  for (const row of rows) {
    const tr = document.createElement("tr");
    for (const cell of row) { const td = document.createElement("td"); td.textContent = cell; tr.append(td); }
    node.append(tr);
  }
}

function chart(counts) {
  const svg = $("events-chart");
  svg.replaceChildren();
  const max = Math.max(1, ...counts);
  const width = 720 / counts.length;
  counts.forEach((count, i) => {
    const rect = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    const height = 110 * count / max;
    rect.setAttribute("x", i * width + 1);
    rect.setAttribute("y", 115 - height);
    rect.setAttribute("width", Math.max(1, width - 2));
    rect.setAttribute("height", height);
    const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
    title.textContent = `${counts.length - i} min ago: ${count} events`;
    rect.append(title);
    svg.append(rect);
  });
}

const interval = (v) => v[0] === null ? "-" : v[0].toFixed(4) + (v[1] === null ? "" : ` [${v[1].toFixed(4)}, ${v[2].toFixed(4)}]`);

async function refresh() {
  const [ready, events, online] = await Promise.all([get("ready"), get("metrics/events?minutes=60"), get("metrics/online?k=10")]);
  $("model").textContent = `${ready.model} · bundle ${ready.bundle} · generation ${ready.generation}`;
  chart(events.events_per_minute);
  $("totals").textContent = `${events.events_total.toLocaleString()} events and ${events.lists_total.toLocaleString()} served lists in the store; ${events.lists_per_minute.reduce((a, b) => a + b, 0)} lists in the last hour`;
  table($("serving"), ["arm", "model version", "share of users"],
    Object.entries(ready.arms).map(([arm, a]) => [arm, a.version, a.share.toFixed(2)]));
  table($("online"), ["arm", "model version", "lists", "judged", "hit@10", "ndcg@10", "click-through", "items served"],
    online.versions.map((r) => [r.arm, r.model, r.lists, r.judged, interval(r["hit@10"]), interval(r["ndcg@10"]), interval(r.click_through), r.items_served]));
  table($("hourly"), ["from", "arm", "lists", "judged", "hit@10", "click-through"],
    online.buckets.map((b) => [new Date(b.from * 1000).toLocaleString(), b.arm, b.lists, b.judged, interval(b["hit@10"]), interval(b.click_through)]));
  const ab = online.ab;
  $("ab").textContent = ab ? `A/B (hit@10, ${ab.b} - ${ab.a}): ${ab.difference >= 0 ? "+" : ""}${ab.difference.toFixed(4)}` +
    (ab.p === null ? ", no test (both arms constant)" : `, p = ${ab.p.toPrecision(3)}: ${ab["significant_at_0.05"] ? "significant" : "not significant"} at 0.05`) : "";
}

refresh().catch((e) => { $("ab").textContent = e.message; });
setInterval(() => refresh().catch((e) => { $("ab").textContent = e.message; }), 5000);

// The lmrec page: pick a user or start as a new visitor, see their history and recommendations, ask for
// something in words (text models), click to record a view or a like, open "why", add an item.
// Plain JavaScript against the service's own API; no build step, nothing loaded from elsewhere.
"use strict";

const state = { user: null, ready: null, wish: "", done: "" };
const $ = (id) => document.getElementById(id);

// The API key: from the link's fragment (#key=..., never sent to a server) or typed in; kept for the tab only.
const fragmentKey = new URLSearchParams(location.hash.slice(1)).get("key");
if (fragmentKey) sessionStorage.setItem("lmrec-key", fragmentKey);
$("key").value = sessionStorage.getItem("lmrec-key") || "";
$("key").addEventListener("change", () => sessionStorage.setItem("lmrec-key", $("key").value));

function status(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

async function api(method, path, body) {
  const headers = { "content-type": "application/json" };
  const key = $("key").value;
  if (key) headers["X-API-Key"] = key;
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await response.json();
  if (!response.ok) {
    const detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
    throw new Error(detail);
  }
  return data;
}

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

async function showHistory() {
  const list = $("history");
  list.replaceChildren();
  if (!state.user) return false;
  try {
    const user = await api("GET", `users/${encodeURIComponent(state.user)}?limit=20`);
    for (const item of user.history) list.append(element("li", item.title || item.id));
    return true;
  } catch (error) {
    list.append(element("li", "no history yet: click an item to start one", "muted"));
    return false;
  }
}

async function showRecommendations() {
  const known = await showHistory();
  const list = $("recommendations");
  $("who").textContent = state.user ? `for ${state.user}` : "";
  const body = { k: 10 };
  if (known) body.user_id = state.user;
  if (state.wish) body.query = state.wish;
  if (!body.user_id && !body.query) {
    list.replaceChildren(element("li", state.ready.reads_text
      ? "type a wish, or show a known user" : "show a known user to see their recommendations", "muted"));
    if (state.done) status(state.done);
    state.done = "";
    return;
  }
  const answer = await api("POST", "recommend", body);
  list.replaceChildren();
  for (const item of answer.items) list.append(recommendationRow(item, Boolean(body.user_id)));
  const arm = answer.arm !== "A" ? ` (arm ${answer.arm})` : "";
  status((state.done ? `${state.done} · ` : "") + `${answer.items.length} items from ${answer.model}${arm}`);
  state.done = "";
}

function recommendationRow(item, explainable) {
  const row = element("li");
  row.dataset.item = item.id;
  row.append(element("span", item.title || item.id, "title"), element("span", item.score.toFixed(3), "score"));
  for (const type of ["view", "like"]) {
    const button = element("button", type, "small");
    button.dataset.action = type;
    button.addEventListener("click", () => record(item.id, type).catch((e) => status(e.message, true)));
    row.append(button);
  }
  if (explainable) {
    const why = element("button", "why", "small");
    why.dataset.action = "why";
    why.addEventListener("click", () => explain(item.id, row).catch((e) => status(e.message, true)));
    row.append(why);
  }
  return row;
}

async function record(item, type) {
  if (!state.user) state.user = `visitor-${Math.random().toString(36).slice(2, 10)}`;
  await api("POST", "events", { events: [{ user: state.user, item, type }] });
  $("user").value = state.user;
  state.done = `recorded: ${state.user} ${type} ${item}`;
  await showRecommendations();
}

async function explain(item, row) {
  const open = row.querySelector(".why");
  if (open) { open.remove(); return; }
  const found = await api("POST", "explain", { user_id: state.user, item });
  const box = element("div", undefined, "why");
  const note = state.wish ? "; from the history alone, without the wish" : "";
  box.append(element("div", `score ${found.score.toFixed(3)} (${found.method}${note}), ${found.ms} ms`, "muted"));
  const items = element("ul");
  for (const c of found.history.slice(0, 5)) {
    const entry = element("li", `${c.title || c.id} `);
    entry.append(element("span", (c.contribution >= 0 ? "+" : "") + c.contribution.toFixed(3), c.contribution >= 0 ? "pos" : "neg"));
    items.append(entry);
  }
  box.append(items);
  if (found.words.length) {
    box.append(element("div", "words: " + found.words.slice(0, 6).map((w) => `${w.word} (${w.contribution >= 0 ? "+" : ""}${w.contribution.toFixed(3)})`).join(", ")));
  }
  if (found.history_words.length && found.history.length) {
    const first = found.history[0];
    box.append(element("div", `matched in ${first.title || first.id}: ` + found.history_words.slice(0, 6).map((w) => `${w.word} (${w.contribution >= 0 ? "+" : ""}${w.contribution.toFixed(3)})`).join(", ")));
  }
  row.append(box);
}

$("user-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.user = $("user").value.trim() || null;
  showRecommendations().catch((e) => status(e.message, true));
});
$("anonymous").addEventListener("click", () => {
  state.user = null;
  $("user").value = "";
  showRecommendations().catch((e) => status(e.message, true));
});
$("wish-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.wish = $("wish").value.trim();
  showRecommendations().catch((e) => status(e.message, true));
});
$("clear-wish").addEventListener("click", () => {
  $("wish").value = "";
  state.wish = "";
  showRecommendations().catch((e) => status(e.message, true));
});
$("item-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const added = await api("POST", "items", { id: $("item-id").value.trim(), fields: { [state.ready.title_field]: $("item-title").value.trim() } });
    state.done = `added ${added.id}: ${added.items} items in the catalogue`;
    await showRecommendations();
  } catch (error) { status(error.message, true); }
});

api("GET", "ready").then((ready) => {
  state.ready = ready;
  $("model").textContent = `${ready.model} · ${ready.items.toLocaleString()} items · bundle ${ready.bundle}`;
  $("wish-form").hidden = !ready.reads_text;
  $("item-form").hidden = !ready.reads_text || !ready.title_field;
  status("pick a user" + (ready.reads_text ? ", or type a wish" : ""));
}).catch((e) => status(e.message, true));

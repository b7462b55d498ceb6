// The search page of `rag-store serve`: no libraries, no network beyond this server.
// Every value from the server is put in the page as text (textContent), never as HTML.
"use strict";

const FILTERS = ["doc_id_like", "title_like", "source_uri_like", "updated_after", "updated_before"];
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

function apiKey() {
  return $("api_key").value || sessionStorage.getItem("rag-store-api-key") || "";
}

async function getJSON(path, params) {
  const url = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== "" && value !== null && value !== undefined) url.searchParams.set(name, value);
  }
  const headers = {};
  const key = apiKey();
  if (key) headers["Authorization"] = "Bearer " + key;
  const response = await fetch(url, { headers });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

function safeLink(uri) {
  // Only web links become anchors: a javascript: or data: URI stays plain text.
  try {
    const url = new URL(uri);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch (error) {
    return null;
  }
}

function renderHits(body) {
  const list = $("results");
  list.replaceChildren();
  for (const hit of body.results) {
    const item = element("li", "hit");
    item.dataset.docId = hit.doc_id;
    const title = element("div", "title");
    const href = hit.source_uri ? safeLink(hit.source_uri) : null;
    if (href) {
      const anchor = element("a", null, hit.title || hit.doc_id);
      anchor.href = href;
      anchor.rel = "noopener noreferrer";
      anchor.target = "_blank";
      title.append(anchor);
    } else {
      title.textContent = hit.title || hit.doc_id;
    }
    item.append(title);
    const meta = [hit.doc_id, hit.heading_path || "—", "score " + hit.score.toFixed(4)];
    if (hit.page_start !== null && hit.page_start !== undefined) {
      const last = hit.page_end ?? hit.page_start;
      const word = hit.page_kind === "slide" ? "slide " : (last === hit.page_start ? "p. " : "pp. ");
      meta.splice(1, 0, word + hit.page_start + (last === hit.page_start ? "" : "–" + last));
    }
    item.append(element("div", "meta", meta.join("  ·  ")));
    if (hit.source_uri && !href) item.append(element("div", "meta", hit.source_uri));
    item.append(element("p", "text", hit.chunk_text));
    const actions = element("div", "actions");
    const more = element("button", null, "more like this");
    more.type = "button";
    more.addEventListener("click", () => similar(hit.chunk_id));
    actions.append(more);
    item.append(actions);
    list.append(item);
  }
}

function filterValues() {
  const values = {};
  for (const name of FILTERS) values[name] = $(name).value.trim();
  return values;
}

async function runSearch(event) {
  if (event) event.preventDefault();
  if ($("api_key").value) sessionStorage.setItem("rag-store-api-key", $("api_key").value);
  const params = { q: $("q").value, mode: $("mode").value, k: $("k").value, ...filterValues() };
  $("status").textContent = "searching…";
  try {
    const body = await getJSON("/search", params);
    renderHits(body);
    $("status").textContent =
      body.results.length + " result(s), " + body.query.mode + ", " + body.took_ms.toFixed(1) + " ms";
  } catch (error) {
    $("results").replaceChildren();
    $("status").textContent = "error: " + error.message;
  }
}

async function similar(chunkId) {
  $("status").textContent = "finding chunks like " + chunkId + "…";
  try {
    const body = await getJSON("/similar", { chunk_id: chunkId, k: $("k").value, ...filterValues() });
    renderHits(body);
    $("status").textContent = body.results.length + " chunk(s) like " + chunkId;
  } catch (error) {
    $("status").textContent = "error: " + error.message;
  }
}

// A line plot of `points` ([[time ms, value], …]) drawn into an <svg>, with its own axes.
function plot(svg, points, format) {
  svg.replaceChildren();
  const width = 320, height = 140, left = 44, right = 8, top = 10, bottom = 22;
  const add = (tag, attributes, text) => {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
    return node;
  };
  add("line", { class: "axis", x1: left, y1: height - bottom, x2: width - right, y2: height - bottom });
  add("line", { class: "axis", x1: left, y1: top, x2: left, y2: height - bottom });
  if (!points.length) {
    add("text", { x: left + 10, y: height / 2 }, "no builds recorded");
    return;
  }
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(0, ...ys), Math.max(...ys)];
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) { y1 = y0 + 1; }
  const sx = (x) => left + ((x - x0) / (x1 - x0)) * (width - left - right);
  const sy = (y) => height - bottom - ((y - y0) / (y1 - y0)) * (height - top - bottom);
  add("text", { x: 2, y: top + 8 }, format(y1));
  add("text", { x: 2, y: height - bottom }, format(y0));
  // Dates, or times of day when the history spans less than two days (UTC).
  const label = (t) => new Date(t).toISOString().slice(x1 - x0 < 2 * 86400000 ? 5 : 0, x1 - x0 < 2 * 86400000 ? 16 : 10).replace("T", " ");
  add("text", { x: left, y: height - 6 }, label(x0));
  add("text", { x: width - right - 64, y: height - 6 }, label(x1));
  const path = points.map((p, i) => (i ? "L" : "M") + sx(p[0]).toFixed(1) + " " + sy(p[1]).toFixed(1));
  add("path", { class: "series", d: path.join(" ") });
  for (const p of points) add("circle", { class: "point", cx: sx(p[0]), cy: sy(p[1]), r: 2.5 });
}

function fact(list, name, value) {
  list.append(element("dt", null, name), element("dd", null, value === null || value === undefined ? "—" : String(value)));
}

async function loadHealth() {
  try {
    const health = await getJSON("/health");
    const badge = $("health-status");
    badge.textContent = health.status;
    badge.className = "badge " + health.status;
    const facts = $("health-facts");
    facts.replaceChildren();
    const store = health.store;
    fact(facts, "published", store.published_at);
    fact(facts, "store age", store.age_seconds === null ? null : (store.age_seconds / 3600).toFixed(1) + " h");
    fact(facts, "chunks", store.chunks);
    fact(facts, "model", store.model_id);
    const current = health.pipeline_health || {};
    fact(facts, "coverage", current.coverage);
    fact(facts, "p95 lag", current.p95_lag_seconds === undefined ? null : (current.p95_lag_seconds / 3600).toFixed(2) + " h");
    fact(facts, "alerts run", health.alerts ? health.alerts.checked_at : "never");
    const problems = $("health-problems");
    problems.replaceChildren();
    for (const line of health.alerts ? health.alerts.problems : []) problems.append(element("li", null, line));
    const when = (row) => Date.parse(row.measured_at);
    const rows = health.history.filter((row) => !Number.isNaN(when(row)));
    plot($("lag-plot"), rows.map((row) => [when(row), (row.p95_lag_seconds || 0) / 3600]), (v) => v.toFixed(1));
    plot($("coverage-plot"), rows.map((row) => [when(row), row.coverage ?? 0]), (v) => v.toFixed(2));
    $("store-line").textContent = store.snapshot;
  } catch (error) {
    $("health-status").textContent = "unavailable";
    $("health-facts").replaceChildren(element("dd", null, error.message));
  }
}

$("search-form").addEventListener("submit", runSearch);
const initial = new URLSearchParams(window.location.search);
if (initial.get("q")) {
  $("q").value = initial.get("q");
  if (initial.get("mode")) $("mode").value = initial.get("mode");
  runSearch();
}
loadHealth();
setInterval(loadHealth, 30000);

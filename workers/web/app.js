// newsflow search page: talks to /search; state lives in the address bar so a reload keeps it.
"use strict";

const $ = (id) => document.getElementById(id);
const FACET_PARAMS = { site: "site", language: "lang", entity: "entity" };
const FACET_TITLES = { site: "Site", language: "Language", entity: "People, places, organisations", month: "Month" };
const state = { q: "", sort: "relevance", page: 1, site: [], lang: [], entity: [], month: "" };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "html") node.innerHTML = v;  // only server-escaped snippets with <mark> tags
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function readUrl() {
  const p = new URLSearchParams(location.search);
  state.q = p.get("q") || "";
  state.sort = p.get("sort") || "relevance";
  state.page = Math.max(1, parseInt(p.get("page") || "1", 10) || 1);
  state.site = p.getAll("site"); state.lang = p.getAll("lang"); state.entity = p.getAll("entity");
  state.month = p.get("month") || "";
}

function params(extra) {
  const p = new URLSearchParams();
  p.set("q", state.q);
  if (state.sort !== "relevance") p.set("sort", state.sort);
  if (state.page > 1) p.set("page", String(state.page));
  for (const k of ["site", "lang", "entity"]) for (const v of state[k]) p.append(k, v);
  if (state.month) p.set("month", state.month);
  for (const [k, v] of Object.entries(extra || {})) p.set(k, v);
  return p;
}

function monthRange(month) {  // "2024-05" → since/until covering that month
  return { since: month, until: month };
}

async function api(p) {
  const headers = {};
  const token = localStorage.getItem("newsflow-token");
  if (token) headers.Authorization = "Bearer " + token;
  const api = new URLSearchParams(p);
  if (api.has("month")) { const r = monthRange(api.get("month")); api.delete("month"); api.set("since", r.since); api.set("until", r.until); }
  const resp = await fetch("/search?" + api.toString(), { headers });
  const body = await resp.json().catch(() => ({ message: "the server answered " + resp.status }));
  if (resp.status === 401) $("token-box").hidden = false;
  if (!resp.ok) throw Object.assign(new Error(body.message || resp.statusText), { body });
  return body;
}

function fmtDate(iso) { return iso ? iso.slice(0, 10) : "undated"; }

function hitItem(hit, withSimilar) {
  const title = el("h2", {}, el("a", { href: hit.url || "#", html: hit.title_html || "(no title)", rel: "noopener" }));
  const meta = el("div", { class: "meta" }, `${fmtDate(hit.published)} · ${hit.site_name || hit.site || ""}` +
    (hit.author ? ` · ${hit.author}` : "") + (hit.language ? ` · ${hit.language}` : ""));
  const li = el("li", { class: "hit", "data-id": hit.id }, title, meta, el("p", { class: "snippet", html: hit.snippet_html }));
  if (withSimilar && hit.similar > 0) {
    const btn = el("button", { class: "similar", type: "button", "aria-expanded": "false" }, `+${hit.similar} similar`);
    btn.addEventListener("click", () => toggleCluster(li, btn, hit));
    li.append(btn);
  }
  return li;
}

async function toggleCluster(li, btn, hit) {
  const open = li.querySelector(".members");
  if (open) { open.remove(); btn.setAttribute("aria-expanded", "false"); btn.textContent = `+${hit.similar} similar`; return; }
  btn.textContent = "loading…";
  try {
    const p = params({ cluster: hit.cluster_id, limit: "50", page: "1" });
    const res = await api(p);
    const list = el("ul", { class: "members" });
    for (const h of res.hits) if (h.id !== hit.id) {
      list.append(el("li", {}, el("a", { href: h.url, html: h.title_html || "(no title)" }), " ",
        el("span", { class: "meta" }, `${fmtDate(h.published)} · ${h.site_name || h.site}`)));
    }
    li.append(list);
    btn.setAttribute("aria-expanded", "true");
    btn.textContent = "hide similar";
  } catch (err) { btn.textContent = "error: " + err.message; }
}

function renderFacets(facets) {
  const box = $("facets");
  box.replaceChildren();
  for (const [name, buckets] of Object.entries(facets || {})) {
    if (!buckets.length) continue;
    const ul = el("ul");
    for (const b of buckets) {
      const value = String(b.value);
      const on = name === "month" ? state.month === value : state[FACET_PARAMS[name]].includes(value);
      const btn = el("button", { type: "button", class: on ? "on" : "", "data-facet": name, "data-value": value },
        el("span", {}, value), el("span", { class: "count" }, String(b.count)));
      btn.addEventListener("click", () => toggleFacet(name, value));
      ul.append(el("li", {}, btn));
    }
    box.append(el("h3", {}, FACET_TITLES[name] || name), ul);
  }
}

function toggleFacet(name, value) {
  if (name === "month") state.month = state.month === value ? "" : value;
  else {
    const list = state[FACET_PARAMS[name]];
    const i = list.indexOf(value);
    if (i >= 0) list.splice(i, 1); else list.push(value);
  }
  state.page = 1;
  run(true);
}

function renderActive() {
  const box = $("active-filters");
  box.replaceChildren();
  const chips = [];
  for (const k of ["site", "lang", "entity"]) for (const v of state[k]) chips.push([k, v]);
  if (state.month) chips.push(["month", state.month]);
  for (const [k, v] of chips) {
    box.append(el("button", { type: "button", onclick: () => toggleFacet(k === "lang" ? "language" : k, v) }, `${k}: ${v} ✕`));
  }
}

function renderPager(res) {
  const nav = $("pager");
  nav.replaceChildren();
  const shown = res.collapsed && res.stories != null ? res.stories : res.total;
  if (state.page > 1) nav.append(el("button", { type: "button", onclick: () => { state.page--; run(true); } }, "← Previous"));
  if (state.page * res.limit < shown) nav.append(el("button", { type: "button", id: "next-page", onclick: () => { state.page++; run(true); } }, "Next →"));
}

async function run(push) {
  const status = $("status");
  status.className = "";
  status.textContent = "Searching…";
  if (push) history.pushState(null, "", "?" + params().toString());
  try {
    const res = await api(params({ facets: "1" }));
    const stories = res.collapsed && res.stories != null ? ` in ${res.stories} stor${res.stories === 1 ? "y" : "ies"}` : "";
    status.textContent = `${res.total} article${res.total === 1 ? "" : "s"}${stories} · page ${res.page} · ${res.took_ms} ms`;
    $("results").replaceChildren(...res.hits.map((h) => hitItem(h, true)));
    renderFacets(res.facets);
    renderActive();
    renderPager(res);
  } catch (err) {
    status.className = "error";
    const col = err.body && err.body.column;
    status.textContent = err.message + (col ? "\n" + state.q + "\n" + " ".repeat(col - 1) + "^" : "");
    $("results").replaceChildren();
    $("pager").replaceChildren();
  }
}

document.addEventListener("DOMContentLoaded", () => {
  readUrl();
  $("q").value = state.q;
  $("sort").value = state.sort;
  $("search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.q = $("q").value.trim();
    state.sort = $("sort").value;
    state.page = 1;
    run(true);
  });
  $("sort").addEventListener("change", () => { state.sort = $("sort").value; state.page = 1; run(true); });
  $("token-save").addEventListener("click", () => { localStorage.setItem("newsflow-token", $("token").value); $("token-box").hidden = true; run(false); });
  window.addEventListener("popstate", () => { readUrl(); $("q").value = state.q; run(false); });
  if (location.search) run(false);
  else $("status").textContent = "Type a query; quoted phrases, AND / OR / NOT and site:, lang:, entity: filters work.";
});

// The demo's search page: POST /v1/query (the root's HTTP/JSON door, same origin), render the answer.
// Rules: result text comes from documents, so it only ever reaches the page as text nodes
// (textContent / createTextNode), never as HTML. The page's state is in the address's hash
// (#q=...&k=10&page=2), so a result page can be linked and reloaded.
"use strict";

const REQUEST_TYPE = "type.googleapis.com/demo_search.v1.SearchRequest";
const MAX_RESULT_WINDOW = 10000; // offset + k, as the leaves enforce (demo_search.messages)
const DEADLINE = "5S"; // grpc-timeout: 5 seconds
const MAX_TOKEN = 64; // longer tokens are dropped by the engine's tokenizer

const $ = (id) => document.getElementById(id);

// --- tokens, as close to demo_search/tokenizer.py as JS allows (docs/demo.md, "The search page") ---

const TOKEN = /[\p{L}\p{M}\p{Nd}\p{Nl}_]+/gu;
const DIGIT = /\p{Nd}/u;

// A decimal digit of any script is its ASCII digit: Unicode puts each script's 0-9 in a run of ten.
function asciiDigit(ch) {
  let cp = ch.codePointAt(0);
  let start = cp;
  while (start > 0 && DIGIT.test(String.fromCodePoint(start - 1))) start--;
  return String((cp - start) % 10);
}

// NFKC, then an approximation of str.casefold() (lower case, with the folds toLowerCase lacks).
function fold(text) {
  return text.normalize("NFKC").toLowerCase().replace(/ß|ẞ/g, "ss").replace(/ς/g, "σ")
    .replace(/\p{Nd}/gu, (d) => (d >= "0" && d <= "9" ? d : asciiDigit(d)));
}

function terms(text) {
  return (fold(text).match(TOKEN) || []).filter((t) => t.length <= MAX_TOKEN);
}

// Append `text` to `parent` as text nodes, each word whose term is in `wanted` inside a <mark>.
function appendHighlighted(parent, text, wanted) {
  let last = 0;
  for (const match of text.matchAll(TOKEN)) {
    if (!terms(match[0]).some((t) => wanted.has(t))) continue;
    parent.appendChild(document.createTextNode(text.slice(last, match.index)));
    const mark = document.createElement("mark");
    mark.textContent = match[0];
    parent.appendChild(mark);
    last = match.index + match[0].length;
  }
  parent.appendChild(document.createTextNode(text.slice(last)));
}

// --- state in the hash ---

function readState() {
  const params = new URLSearchParams(location.hash.slice(1));
  const k = Math.max(1, Math.min(50, parseInt(params.get("k") || "10", 10) || 10));
  const page = Math.max(1, parseInt(params.get("page") || "1", 10) || 1);
  return { q: params.get("q") || "", k, page };
}

function writeState(state) {
  const params = new URLSearchParams({ q: state.q, k: String(state.k), page: String(state.page) });
  const hash = "#" + params.toString();
  if (location.hash === hash) search(state); // the same page again: search anyway
  else location.hash = hash; // hashchange runs the search
}

// --- the request ---

const STATUS_HELP = {
  400: "the request was refused",
  404: "the root has no such path",
  413: "the request is too large",
  429: "the root is shedding load (too many requests at once)",
  503: "the search is unavailable (too few shards answered, or the merge is down)",
  504: "the search ran past its deadline",
};

let generation = 0;

async function search(state) {
  const mine = ++generation;
  $("q").value = state.q;
  $("k").value = String(state.k);
  clear();
  if (!state.q.trim()) return;
  const offset = (state.page - 1) * state.k;
  $("status").textContent = "Searching…";
  const body = { payload: { "@type": REQUEST_TYPE, query: state.q, k: state.k, offset } };
  let response, answer;
  const started = performance.now();
  try {
    response = await fetch("v1/query", {
      method: "POST",
      headers: { "Content-Type": "application/json", "grpc-timeout": DEADLINE },
      body: JSON.stringify(body),
    });
    answer = await response.json().catch(() => null);
  } catch (err) {
    if (mine === generation) showError("Cannot reach the search service: " + err.message);
    return;
  }
  if (mine !== generation) return; // a newer search is under way
  const elapsed = performance.now() - started;
  if (!response.ok) {
    let text = `Error ${response.status}: ${STATUS_HELP[response.status] || response.statusText || "the search failed"}`;
    if (answer && typeof answer.message === "string") text += ` — ${answer.message}`;
    const retry = response.headers.get("Retry-After");
    if (retry) text += ` Retry in ${retry} s.`;
    showError(text);
    return;
  }
  render(state, offset, answer, elapsed);
}

function clear() {
  $("status").textContent = "";
  for (const id of ["warning", "error", "pager", "shards-box"]) $(id).hidden = true;
  $("results").replaceChildren();
  document.querySelector("#shards tbody").replaceChildren();
}

function showError(text) {
  $("status").textContent = "";
  $("error").textContent = text;
  $("error").hidden = false;
}

function seconds(duration) {
  // protobuf's JSON of a Duration: "0.012345s"
  return parseFloat(String(duration || "0s").replace(/s$/, "")) || 0;
}

function render(state, offset, answer, elapsed) {
  const result = answer.payload || {};
  const hits = result.hits || [];
  const total = Number(result.totalMatches || 0);
  const coverage = answer.coverage || result.coverage || { total: 0, answered: 0, missing: [] };
  const rootMs = (seconds(answer.latency) * 1000).toFixed(1);
  const first = hits.length ? offset + 1 : 0;
  $("status").textContent =
    `${total.toLocaleString("en")} matching documents · results ${first}–${offset + hits.length}` +
    ` · coverage ${coverage.answered}/${coverage.total} shards · ${rootMs} ms at the root, ${elapsed.toFixed(0)} ms here`;

  if (coverage.answered < coverage.total) {
    const missing = (coverage.missing || [])
      .map((m) => `shard ${m.shardIndex || 0} ${String(m.status || "").replace("SHARD_STATUS_", "")}` +
        (m.reason ? ` (${m.reason})` : ""))
      .join(", ");
    $("warning").textContent =
      `Partial results: only ${coverage.answered} of ${coverage.total} shards answered` +
      (missing ? `; missing ${missing}` : "") + ". Documents on the missing shards are not in this list.";
    $("warning").hidden = false;
  }

  const wanted = new Set(terms(state.q));
  const list = $("results");
  list.start = offset + 1;
  for (const hit of hits) {
    const item = document.createElement("li");
    const title = document.createElement("span");
    title.className = "title";
    appendHighlighted(title, hit.title || hit.docId || "", wanted);
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = `score ${Number(hit.score || 0).toFixed(3)} · shard ${hit.shardIndex || 0} · ${hit.docId || ""}`;
    const snippet = document.createElement("p");
    snippet.className = "snippet";
    appendHighlighted(snippet, hit.snippet || "", wanted);
    item.append(title, meta, snippet);
    list.appendChild(item);
  }
  if (!hits.length) {
    const item = document.createElement("li");
    item.textContent = "No documents match.";
    list.appendChild(item);
  }

  const end = offset + state.k;
  $("prev").disabled = state.page <= 1;
  $("next").disabled = end >= total || end + state.k > MAX_RESULT_WINDOW;
  $("page").textContent = `page ${state.page} of ${Math.max(1, Math.ceil(Math.min(total, MAX_RESULT_WINDOW) / state.k))}`;
  $("pager").hidden = total === 0;

  const rows = document.querySelector("#shards tbody");
  for (const report of answer.shards || []) {
    const row = document.createElement("tr");
    const cells = [
      report.shardIndex || 0,
      String(report.status || "").replace("SHARD_STATUS_", "") + (report.error ? `: ${report.error}` : ""),
      `${(seconds(report.latency) * 1000).toFixed(1)} ms`,
      report.replica || "",
      report.attempts || 0,
      report.hedgeWon ? "yes" : "",
    ];
    for (const value of cells) {
      const cell = document.createElement("td");
      cell.textContent = String(value);
      row.appendChild(cell);
    }
    rows.appendChild(row);
  }
  $("shards-box").hidden = rows.children.length === 0;
  $("shards-box").open = true;
}

// --- wiring ---

document.addEventListener("DOMContentLoaded", () => {
  $("search").addEventListener("submit", (event) => {
    event.preventDefault();
    writeState({ q: $("q").value, k: parseInt($("k").value, 10), page: 1 });
  });
  $("prev").addEventListener("click", () => {
    const state = readState();
    writeState({ ...state, page: Math.max(1, state.page - 1) });
  });
  $("next").addEventListener("click", () => {
    const state = readState();
    writeState({ ...state, page: state.page + 1 });
  });
  window.addEventListener("hashchange", () => search(readState()));
  search(readState());
});

// The triage workbench page. Every text from the server (tickets, catalogue, notes) is put in
// the page as text (textContent, createTextNode), never parsed as HTML: a hostile ticket
// cannot add markup or run script. The Zendesk HTML note is shown rendered by reading it with
// DOMParser (inert: scripts in a parsed document never run) and copying only its paragraphs,
// line breaks and text.
"use strict";

const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem("triage-workbench-token") || "";
let state = null;          // GET /api/state
let files = [];            // the session's files as edited here
let fileIndex = 0;
let measureStale = true;

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k === "title") e.title = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return e;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers["X-Workbench-Token"] = token;
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (r.status === 401) { $("token-box").hidden = false; throw new Error("access token needed"); }
  const data = await r.json();
  if (!r.ok) throw new Error(data.error || r.statusText);
  return data;
}

function debounce(fn, ms) {
  let t = null;
  return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
}

function show(view) {
  for (const v of ["try", "edit", "measure"]) {
    $("view-" + v).hidden = v !== view;
    $("tab-" + v).classList.toggle("active", v === view);
  }
  if (view === "measure" && measureStale) loadMeasure();
}

function idButton(id) {
  return el("button", { type: "button", class: "id-link", "data-ticket": id, text: id, onclick: () => openTicket(id) });
}

function fmt(x) { return (Math.round(x * 1000) / 1000).toFixed(3); }

// ---- Try a ticket -------------------------------------------------------------------------

async function classify(req) {
  let x;
  try { x = await api("POST", "/api/try", req); } catch (e) { $("symptoms").replaceChildren(el("li", { text: String(e.message) })); return; }
  renderTry(x);
}

function renderTry(x) {
  $("try-id").textContent = x.id === "pasted" ? "" : "(" + x.id + ")";
  const ul = clear($("symptoms"));
  if (x.symptoms.length === 0) ul.append(el("li", { class: "none", text: "no known symptom" }));
  for (const s of x.symptoms) {
    const ev = el("ul", {});
    for (const e of s.evidence) ev.append(el("li", { text: e.field + ": “" + e.text + "” — " + e.words }));
    ul.append(el("li", { class: "symptom", "data-id": s.id },
      el("span", { class: "swatch c" + (s.colour % 12) }),
      el("strong", { text: s.id }), " " + s.title + " — score " + s.score.toFixed(2) + " of " + s.threshold.toFixed(2) + " needed",
      el("span", { class: "hint", text: "  (" + s.defined_at + ")" }), ev));
  }
  const lab = $("labels-line");
  if (x.labels) {
    const found = x.symptoms.map((s) => s.id).sort();
    const want = [...x.labels].sort();
    const right = JSON.stringify(found) === JSON.stringify(want);
    lab.hidden = false;
    lab.replaceChildren(el("span", { class: right ? "ok-mark" : "bad-mark", text: right ? "right" : "wrong" }),
      ": labelled [" + want.join(", ") + "], found [" + found.join(", ") + "]");
  } else lab.hidden = true;
  for (const f of x.fields) {
    const box = clear($("text-" + f.name));
    for (const sp of f.spans) {
      if (sp.marks.length > 0) {
        const s = x.symptoms[sp.marks[0][0]];
        const words = sp.marks.map((m) => x.symptoms[m[0]].id + ": " + m[1]).join("\n");
        box.append(el("mark", { class: "mark c" + (s.colour % 12) + (sp.marks.length > 1 ? " multi" : ""), title: words, "data-symptom": s.id, text: sp.text }));
      } else if (sp.cancelled) {
        box.append(el("span", { class: "cancelled", title: "did not count: " + sp.cancelled, text: sp.text }));
      } else {
        box.append(document.createTextNode(sp.text));
      }
    }
  }
  const cl = clear($("cancelled"));
  for (const c of x.cancelled) cl.append(el("li", {}, el("span", { class: "cancelled", text: c.text }), " (" + c.field + "): " + c.why));
  $("tags").textContent = x.tags.length ? x.tags.join(", ") : "(none)";
  const notes = clear($("notes"));
  for (const n of x.notes) {
    const rendered = el("div", { class: "rendered" });
    if (!n.source) rendered.append(el("span", { class: "hint", text: "no note: nothing found" }));
    else if (n.markup === "html") renderHtmlNote(n.source, rendered);
    else if (n.markup === "jira") rendered.append(el("pre", { text: n.source.replace(/\\(.)/g, "$1") }));
    else rendered.append(el("pre", { text: n.source }));
    notes.append(el("div", { class: "note", "data-markup": n.markup },
      el("h3", { text: n.system }),
      el("div", { class: "pair" },
        el("div", {}, el("div", { class: "label", text: "rendered" }), rendered),
        el("div", {}, el("div", { class: "label", text: "source (as sent)" }), el("pre", { class: "source", text: n.source })))));
  }
}

// The HTML note rebuilt from its paragraphs and line breaks only; everything else is text.
function renderHtmlNote(source, into) {
  const doc = new DOMParser().parseFromString(source, "text/html");
  const copy = (from, to) => {
    for (const node of from.childNodes) {
      if (node.nodeType === Node.TEXT_NODE) to.append(document.createTextNode(node.textContent));
      else if (node.nodeName === "P") { const p = el("p", {}); copy(node, p); to.append(p); }
      else if (node.nodeName === "BR") to.append(el("br", {}));
      else to.append(document.createTextNode(node.textContent));
    }
  };
  copy(doc.body, into);
}

function openTicket(id) {
  show("try");
  $("subject").value = "";
  $("body").value = "";
  classify({ id }).then(() => {
    // Show the ticket's own text in the inputs too, so it can be edited and tried again.
    const subj = [...$("text-subject").childNodes].map((n) => n.textContent).join("");
    const body = [...$("text-body").childNodes].map((n) => n.textContent).join("");
    $("subject").value = subj;
    $("body").value = body;
  });
}

// ---- Edit the catalogue -------------------------------------------------------------------

function renderState(s) {
  state = s;
  $("catalogue-name").textContent = "catalogue " + s.catalogue.name + " " + s.catalogue.version;
  if (files.length === 0) files = s.files.map((f) => ({ path: f.path, text: f.text }));
  const sel = clear($("file"));
  s.files.forEach((f, i) => sel.append(el("option", { value: String(i), text: f.path })));
  sel.value = String(fileIndex);
  const probs = clear($("problems"));
  for (const p of s.problems) {
    probs.append(el("li", { "data-line": String(p.line), text: p.text, onclick: () => jumpTo(p.path, p.line) }));
  }
  const status = $("edit-status");
  const edited = s.diff.length > 0;
  if (s.problems.length) {
    status.className = "bad";
    status.textContent = s.problems.length + " problem(s), as `triage check` reports them; the session keeps classifying with the last valid catalogue.";
  } else {
    status.className = "ok";
    status.textContent = edited ? "Valid. The session classifies with this edit (not saved)." : "Valid. Same as the files on disk.";
  }
  $("session-status").textContent = s.problems.length ? "edit has problems" : edited ? "edited, not saved" : "saved catalogue";
  $("write").hidden = !s.write;
  $("write").disabled = !edited || s.problems.length > 0;
  $("diff-box").hidden = !edited;
  $("diff").textContent = s.diff;
  $("diff-why").textContent = s.write ? "Write to files saves it; the diff is for review." : "This workbench was started without --write: copy the diff and apply it yourself (git apply, or by hand).";
  renderBrowse();
  $("pick-box").hidden = !s.labels;
  $("measure-none").hidden = !!s.labels;
  $("measure-box").hidden = !s.labels;
  const ss = $("suggest-symptom");
  const keep = ss.value;
  clear(ss).append(el("option", { value: "", text: "every symptom" }));
  for (const sym of s.browse.symptoms) ss.append(el("option", { value: sym.id, text: sym.id }));
  ss.value = keep;
}

function renderBrowse() {
  if (!state) return;
  const q = $("browse-search").value.trim().toLowerCase();
  const hit = (...xs) => !q || xs.flat().some((x) => String(x).toLowerCase().includes(q));
  const ul = clear($("browse-symptoms"));
  for (const s of state.browse.symptoms) {
    if (!hit(s.id, s.title, s.keywords, s.hints, s.requires, s.patterns, s.exclude, s.unless, s.tags)) continue;
    ul.append(el("li", { onclick: () => jumpTo(s.path, s.line), title: s.path + ":" + s.line },
      el("span", { class: "swatch c" + (s.colour % 12) }), s.id,
      el("div", { class: "sub", text: s.title + " · " + s.keywords.length + " keywords, " + s.hints.length + " hints, " + s.together + " together, " + s.patterns.length + " patterns" })));
  }
  const tl = clear($("browse-terms"));
  for (const t of state.browse.terms) {
    if (!hit(t.name, t.phrases)) continue;
    tl.append(el("li", { onclick: () => jumpTo(t.path, t.line) }, "@" + t.name,
      el("div", { class: "sub", text: t.phrases.join(", ") })));
  }
}

function jumpTo(path, line) {
  show("edit");
  const i = files.findIndex((f) => f.path === path);
  if (i >= 0 && i !== fileIndex) { fileIndex = i; $("file").value = String(i); $("editor").value = files[i].text; }
  const ed = $("editor");
  const lines = ed.value.split("\n");
  let pos = 0;
  for (let k = 0; k < Math.max(0, line - 1) && k < lines.length; k++) pos += lines[k].length + 1;
  ed.focus();
  ed.setSelectionRange(pos, pos + (lines[line - 1] || "").length);
  const lh = parseFloat(getComputedStyle(ed).lineHeight) || 16;
  ed.scrollTop = Math.max(0, (line - 5) * lh);
  showCursor();
}

function showCursor() {
  const ed = $("editor");
  const before = ed.value.slice(0, ed.selectionStart);
  const line = before.split("\n").length;
  $("cursor").textContent = files[fileIndex] ? files[fileIndex].path + ":" + line : "";
}

const sendEdit = debounce(async () => {
  try {
    const s = await api("PUT", "/api/session", { files });
    renderState(s);
    measureStale = true;
    if (s.labels && s.problems.length === 0) showEffect();
    else $("edit-effect").replaceChildren();
  } catch (e) { $("edit-status").textContent = String(e.message); }
}, 250);

const showEffect = debounce(async () => {
  const box = $("edit-effect");
  try {
    const m = await api("GET", "/api/measure");
    renderMeasure(m);
    measureStale = false;
    if (!m.edited) { box.replaceChildren(); return; }
    const changed = m.symptoms.filter((d) => f1(d.session) !== f1(d.saved));
    box.replaceChildren(el("h3", { text: "What this edit changes on " + m.report.tickets + " labelled tickets" }),
      el("p", {}, "fixes " + m.fixes.length + ", breaks " + m.breaks.length + "; macro F1 " + fmt(m.saved.macro_f1) + " → " + fmt(m.report.macro_f1) + " ",
        el("button", { type: "button", text: "details", onclick: () => show("measure") })),
      el("ul", {}, ...changed.map((d) => el("li", {}, d.id + ": F1 " + fmt(f1(d.saved)) + " → " + fmt(f1(d.session)) + " ", delta(f1(d.session) - f1(d.saved))))));
  } catch (e) { box.textContent = String(e.message); }
}, 400);

function f1(s) { return s ? s.f1 : 0; }

function delta(d) {
  if (Math.abs(d) < 0.0005) return el("span", { text: "±0" });
  return el("span", { class: d > 0 ? "plus" : "minus", text: (d > 0 ? "+" : "−") + fmt(Math.abs(d)) });
}

// ---- Measure ------------------------------------------------------------------------------

async function loadMeasure() {
  if (!state || !state.labels) return;
  try { renderMeasure(await api("GET", "/api/measure")); measureStale = false; }
  catch (e) { $("measure-summary").textContent = String(e.message); }
}

function renderMeasure(m) {
  const r = m.report;
  $("measure-summary").replaceChildren(
    el("span", { id: "m-tickets", "data-value": String(r.tickets), text: r.tickets + " labelled tickets" }), " · micro F1 ",
    el("strong", { id: "m-micro", "data-value": String(r.micro_f1), text: fmt(r.micro_f1) }), " · macro F1 ",
    el("strong", { id: "m-macro", "data-value": String(r.macro_f1), text: fmt(r.macro_f1) }), " ", m.edited ? delta(r.macro_f1 - m.saved.macro_f1) : "",
    " · off-topic false positives ",
    el("strong", { id: "m-fp", "data-value": String(r.false_positive_rate), text: r.off_topic_false_positives + " of " + r.off_topic + " (" + fmt(r.false_positive_rate) + ")" }),
    " · " + (m.edited ? "edited catalogue (not saved), beside the saved one" : "saved catalogue") + " · evaluated in " + m.elapsed_ms + " ms");
  const tb = clear($("measure-table").tBodies[0]);
  for (const d of m.symptoms) {
    const s = d.session || d.saved;
    const num = (v, key) => el("td", { class: "num", "data-key": key, "data-value": String(v), text: typeof v === "number" && !Number.isInteger(v) ? fmt(v) : String(v) });
    tb.append(el("tr", { "data-id": d.id },
      el("td", { text: d.id + (d.session ? "" : " (removed)") }),
      num(s.support, "support"), num(s.tp, "tp"), num(s.fp, "fp"), num(s.fn_, "fn"),
      num(s.precision, "precision"), num(s.recall, "recall"), num(s.f1, "f1"),
      el("td", {}, m.edited ? delta(f1(d.session) - f1(d.saved)) : "")));
  }
  const ids = (node, list) => { clear(node); if (!list.length) node.append(el("span", { class: "hint", text: "none" })); for (const id of list) node.append(idButton(id)); };
  ids($("fixes"), m.fixes);
  ids($("breaks"), m.breaks);
  const ct = clear($("confusion").tBodies[0]);
  for (const c of r.confusion) {
    const cell = el("td", { class: "ids" });
    for (const id of c.tickets) cell.append(idButton(id));
    ct.append(el("tr", {}, el("td", { text: c.expected }), el("td", { text: c.found }), el("td", { class: "num", text: String(c.count) }), el("td", { class: "num", text: String(c.instead) }), cell));
  }
  const ot = clear($("off-topic").tBodies[0]);
  for (const g of r.off_topic_by_symptom) {
    const cell = el("td", { class: "ids" });
    for (const id of g.tickets) cell.append(idButton(id));
    ot.append(el("tr", {}, el("td", { text: g.symptom }), el("td", { class: "num", text: String(g.count) }), cell));
  }
  const mt = clear($("misses").tBodies[0]);
  for (const x of r.misclassified) {
    mt.append(el("tr", { "data-id": x.id }, el("td", {}, idButton(x.id)), el("td", { text: x.expected.join(", ") || "(none)" }), el("td", { text: x.found.join(", ") || "(none)" })));
  }
}

async function loadSuggestions() {
  const box = clear($("suggestions"));
  box.append(el("p", { class: "hint", text: "working…" }));
  const symptom = $("suggest-symptom").value || null;
  let data;
  try { data = await api("POST", "/api/suggest", { symptom }); } catch (e) { box.replaceChildren(el("p", { text: String(e.message) })); return; }
  clear(box);
  if (!data.suggestions.length) box.append(el("p", { text: "No phrase found that fixes a wrong ticket." }));
  let last = "";
  for (const x of data.suggestions) {
    const s = x.suggestion;
    const head = s.symptom + " · " + s.field;
    if (head !== last) { box.append(el("h4", { text: "symptom " + s.symptom + ", add to " + s.field + " = [ … ]" })); last = head; }
    const fixes = el("span", { class: "ids" }, "fixes: ", ...s.fixes.map(idButton));
    const breaks = el("span", { class: "ids" }, " breaks: ", ...(s.breaks.length ? s.breaks.map(idButton) : ["none"]));
    box.append(el("div", { class: "suggestion" }, el("pre", { text: x.toml }),
      el("button", { type: "button", text: "Copy", onclick: () => navigator.clipboard && navigator.clipboard.writeText(x.toml) }), " ", fixes, breaks));
  }
}

// ---- Start --------------------------------------------------------------------------------

async function start() {
  let s;
  try { s = await api("GET", "/api/state"); } catch (e) { return; }
  files = s.files.map((f) => ({ path: f.path, text: f.text }));
  renderState(s);
  $("editor").value = files[0] ? files[0].text : "";
  if (s.labels) {
    const t = await api("GET", "/api/tickets");
    const dl = clear($("pick-list"));
    for (const x of t.tickets.slice(0, 5000)) dl.append(el("option", { value: x.id, text: x.id + " — " + x.subject }));
  }
  if (s.labels) loadMeasure();
}

document.addEventListener("DOMContentLoaded", () => {
  for (const b of document.querySelectorAll(".tab")) b.addEventListener("click", () => show(b.dataset.view));
  $("classify").addEventListener("click", () => classify({ subject: $("subject").value, body: $("body").value }));
  $("pick-go").addEventListener("click", () => { const v = $("pick").value.trim(); if (v) openTicket(v); });
  $("editor").addEventListener("input", () => { files[fileIndex].text = $("editor").value; showCursor(); sendEdit(); });
  $("editor").addEventListener("click", showCursor);
  $("editor").addEventListener("keyup", showCursor);
  $("file").addEventListener("change", () => { fileIndex = Number($("file").value); $("editor").value = files[fileIndex].text; showCursor(); });
  $("browse-search").addEventListener("input", renderBrowse);
  $("revert").addEventListener("click", async () => {
    files = state.saved.map((f) => ({ path: f.path, text: f.text }));
    $("editor").value = files[fileIndex].text;
    const r = await api("PUT", "/api/session", { files });
    renderState(r);
    measureStale = true;
    $("edit-effect").replaceChildren();
  });
  $("write").addEventListener("click", async () => {
    try { const r = await api("POST", "/api/write", {}); renderState(r.state); $("edit-status").textContent = "Written: " + r.written + " file(s)."; measureStale = true; }
    catch (e) { $("edit-status").textContent = String(e.message); }
  });
  $("copy-diff").addEventListener("click", () => navigator.clipboard && navigator.clipboard.writeText($("diff").textContent));
  $("suggest").addEventListener("click", loadSuggestions);
  $("token-save").addEventListener("click", () => { token = $("token").value; sessionStorage.setItem("triage-workbench-token", token); $("token-box").hidden = true; start(); });
  show("try");
  start();
});

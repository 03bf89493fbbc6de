// The kgrag page: asks POST /v1/answer on this origin and draws the reply.
// Plain DOM code, no framework and no build step; text goes in through textContent only.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg"; // the SVG namespace name, not a resource: nothing is fetched
const HINTS = {
  401: "This service needs an API key; the page is for key-less use.",
  413: "The request is too large.",
  422: "The question or an option was not accepted.",
  429: "The service is busy.",
  503: "The service is not ready.",
  504: "The service took too long.",
};

const $ = (id) => document.getElementById(id);

// One element with attributes and children (strings become text nodes).
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

function svgEl(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== null) node.textContent = text;
  return node;
}

// A probability as text: four decimals, or two significant digits below 1e-4.
function formatProb(p) {
  if (p === null || p === undefined) return "–";
  if (p > 0 && p < 1e-4) return p.toExponential(1);
  return p.toFixed(4);
}

// A horizontal bar whose filled share is the probability, with the number beside it.
function bar(p, label) {
  const value = Math.min(Math.max(Number(p) || 0, 0), 1);
  const fill = el("div", { class: "fill" });
  fill.style.width = `${value * 100}%`;
  return el("div", { class: "bar", "data-value": String(value), title: `${label} ${p}` },
    el("div", { class: "track" }, fill), el("span", { class: "num" }, formatProb(p)));
}

function requestBody() {
  const body = { question: $("question").value, mode: $("mode").value, constrain: $("constrain").checked };
  const k = $("k").value.trim();
  if (k) body.k = Number(k);
  return body;
}

async function ask(event) {
  event.preventDefault();
  setBusy(true);
  try {
    const response = await fetch("/v1/answer", {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json" },
      body: JSON.stringify(requestBody()),
    });
    if (response.ok) {
      render(await response.json(), response.headers.get("x-request-id"));
    } else {
      showError(await errorText(response));
    }
  } catch (err) {
    showError(`Cannot reach the service: ${err.message}`);
  } finally {
    setBusy(false);
  }
}

function setBusy(busy) {
  $("submit").disabled = busy;
  $("status").textContent = busy ? "Asking…" : "";
}

// The text with a full stop at its end, unless it has one.
const sentence = (text) => (/[.!?]$/.test(text) ? text : `${text}.`);

// "<status> <code>: <message>", with a hint for the status and Retry-After when the service sent one.
async function errorText(response) {
  let code = response.statusText || "error";
  let message = "";
  try {
    const body = await response.json();
    code = body.error?.code ?? code;
    message = body.error?.message ?? JSON.stringify(body);
  } catch {
    message = "the reply was not JSON";
  }
  const parts = [`${response.status} ${code}: ${sentence(message)}`];
  if (HINTS[response.status]) parts.push(HINTS[response.status]);
  const retry = response.headers.get("retry-after");
  if (retry) parts.push(`Try again in ${retry} s.`);
  return parts.join(" ");
}

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = false;
  $("result").hidden = true;
}

function render(reply, requestId) {
  $("error").hidden = true;
  renderAnswers(reply);
  renderEvidence(reply);
  renderLinked(reply.linked || []);
  renderMeta(reply, requestId);
  $("result").hidden = false;
}

// Every answer of a list question when the reply has `answers`, else the one `answer`.
function answerList(reply) {
  if (Array.isArray(reply.answers) && reply.answers.length) return reply.answers;
  if (reply.answer === null || reply.answer === undefined) return [];
  return [{ name: reply.answer, prob: reply.prob, paths: [], complete: reply.complete }];
}

function renderAnswers(reply) {
  const answers = answerList(reply);
  const box = $("answers");
  box.replaceChildren(...answers.map(renderAnswer));
  const note = reply.note || (answers.length ? "" : "No answer.");
  $("note").textContent = note;
  $("note").hidden = !note;
}

function renderAnswer(answer) {
  const name = el("span", { class: "name" }, answer.name);
  const head = el("div", { class: "answer-head" }, name, bar(answer.prob, "p(answer)"));
  if (answer.complete === false) head.append(el("span", { class: "cut" }, "cut at max_new_tokens"));
  const item = el("div", { class: "answer" }, head);
  for (const path of answer.paths || []) item.append(drawPath(path));
  return item;
}

// The evidence documents: relation paths when the reply has them, else facts.
function renderEvidence(reply) {
  const paths = Array.isArray(reply.paths) && reply.paths.length ? reply.paths : null;
  const rows = paths || reply.facts || [];
  $("evidence-title").textContent = paths ? "Evidence: paths" : "Evidence: facts";
  $("evidence-kind").textContent = paths ? "path" : "fact";
  const top = rows.reduce((best, row, i) => (row.posterior > (rows[best]?.posterior ?? -1) ? i : best), -1);
  $("evidence").tBodies[0].replaceChildren(...rows.map((row, i) => evidenceRow(row, paths !== null, i === top)));
  $("evidence-section").hidden = rows.length === 0;
}

function evidenceRow(doc, isPath, isTop) {
  const what = el("td", { class: "doc" }, el("div", { class: "text" }, doc.text));
  if (isPath) what.append(drawPath(doc));
  const row = el("tr", isTop ? { class: "top" } : {}, what);
  for (const [key, label] of [["prior", "prior"], ["likelihood", "likelihood"], ["posterior", "posterior"]]) {
    row.append(el("td", { class: key }, bar(doc[key], label)));
  }
  return row;
}

function renderLinked(linked) {
  const items = linked.map((entity) => {
    const item = el("li", {}, el("span", { class: "mention" }, entity.mention), " → ",
      el("span", { class: "names" }, (entity.names || []).join(", ")));
    if (entity.hinted) item.append(el("span", { class: "tag" }, "[bracket hint]"));
    return item;
  });
  $("linked").replaceChildren(...(items.length ? items : [el("li", { class: "none" }, "none found")]));
}

function renderMeta(reply, requestId) {
  const t = reply.timings || {};
  const parts = [`model ${reply.model}`, `mode ${reply.mode}`];
  if (t.total_ms !== undefined) {
    parts.push(`retrieve ${t.retrieve_ms.toFixed(1)} ms, queue ${t.queue_ms.toFixed(1)} ms, ` +
      `generate ${t.generate_ms.toFixed(1)} ms, total ${t.total_ms.toFixed(1)} ms`);
  }
  if (requestId) parts.push(`request ${requestId}`);
  $("meta").textContent = parts.join(" · ");
}

// ---- the drawing of a relation path: topic -> entity -> entity, one labelled arrow per step ----

const NODE_H = 26;
const NODE_Y = 30;
const MAX_LABEL = 28;

function shorten(text) {
  return text.length > MAX_LABEL ? `${text.slice(0, MAX_LABEL - 1)}…` : text;
}

const nodeWidth = (label) => Math.max(48, shorten(label).length * 7 + 20);
const gapWidth = (relation) => Math.max(80, shorten(relation).length * 6.5 + 36);

// Each step follows `relation` to `entity`; `inverse` means the KG fact reads (entity, relation, previous
// entity), so that edge's arrow points back to the previous node.
function drawPath(path) {
  const labels = [path.topic, ...(path.steps || []).map((step) => step.entity)];
  const xs = [];
  let x = 4;
  labels.forEach((label, i) => {
    xs.push(x);
    x += nodeWidth(label) + (i < labels.length - 1 ? gapWidth(path.steps[i].relation) : 0);
  });
  const svg = svgEl("svg", { class: "path", width: x + 4, height: NODE_Y + NODE_H + 6,
    viewBox: `0 0 ${x + 4} ${NODE_Y + NODE_H + 6}`, role: "img" });
  svg.append(svgEl("title", {}, path.text || labels.join(" → ")));
  (path.steps || []).forEach((step, i) => {
    svg.append(drawEdge(xs[i] + nodeWidth(labels[i]), xs[i + 1], step));
  });
  labels.forEach((label, i) => svg.append(drawNode(xs[i], label, i === 0)));
  return svg;
}

function drawNode(x, label, isTopic) {
  const group = svgEl("g", { class: isTopic ? "node topic" : "node" });
  group.append(svgEl("title", {}, label));
  group.append(svgEl("rect", { x, y: NODE_Y, width: nodeWidth(label), height: NODE_H, rx: 6 }));
  group.append(svgEl("text", { x: x + nodeWidth(label) / 2, y: NODE_Y + NODE_H / 2 + 4,
    "text-anchor": "middle" }, shorten(label)));
  return group;
}

function drawEdge(from, to, step) {
  const y = NODE_Y + NODE_H / 2;
  const group = svgEl("g", { class: step.inverse ? "edge inverse" : "edge", "data-relation": step.relation });
  group.append(svgEl("line", { x1: from + 2, y1: y, x2: to - 2, y2: y }));
  const tip = step.inverse ? from + 2 : to - 2;
  const back = step.inverse ? tip + 8 : tip - 8;
  group.append(svgEl("polygon", { class: "arrow", points: `${tip},${y} ${back},${y - 4} ${back},${y + 4}` }));
  group.append(svgEl("text", { x: (from + to) / 2, y: NODE_Y - 8, "text-anchor": "middle" },
    shorten(step.relation)));
  return group;
}

document.addEventListener("DOMContentLoaded", () => {
  $("ask").addEventListener("submit", ask);
  const preset = new URLSearchParams(window.location.search).get("q");
  if (preset) $("question").value = preset;
  $("question").focus();
});

// The "Image libraries" tab: search a library by text, by an image (optionally item by item) or by
// a stored image ("more like this"), with a tag_filter, results as a thumbnail grid.
import { API, ApiError, ServerDown, busy, dropZone, el, prepareImage, request, thumbUrl, toBase64 } from "./common.js";

const $ = (id) => document.getElementById(id);
const OPS = ["=", "!=", ">", ">=", "<", "<=", "contains", "not_contains", "in", "not_in"];
const state = {
  libraries: [],
  image: null,       // prepared query image (common.prepareImage)
  similar: null,     // image_id of a "more like this" query
  merged: [],        // results of the last query (all segments merged)
  segments: null,    // segments of the last segmented query
  tagSamples: [],    // [key, value] pairs seen in the library, for the builder and the examples
};

// -- tabs ------------------------------------------------------------------------------------

for (const tab of document.querySelectorAll("nav [role=tab]")) {
  tab.addEventListener("click", () => {
    for (const t of document.querySelectorAll("nav [role=tab]")) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      $(t.getAttribute("aria-controls")).hidden = !on;
    }
  });
}
const imagesActive = () => !$("panel-images").hidden;

// -- libraries ---------------------------------------------------------------------------------

function notice(kind, ...children) {
  const box = $("notice");
  box.className = `notice ${kind}`;
  box.replaceChildren(...children);
  box.hidden = false;
}

function clearNotice() {
  $("notice").hidden = true;
  $("notice").replaceChildren();
}

function formEnabled(on) {
  for (const node of $("search").querySelectorAll("input, select, textarea, button")) node.disabled = !on;
  $("reload").disabled = false;
  if (on) applyMode();
}

async function loadLibraries() {
  busy($("status"), "loading libraries…");
  try {
    const { data } = await request(`${API}/libraries`);
    state.libraries = data.data || [];
  } catch (err) {
    state.libraries = [];
    formEnabled(false);
    $("status").textContent = "";
    const retry = el("button", { type: "button", onclick: loadLibraries }, "Retry");
    notice(err instanceof ServerDown ? "down" : "error", el("b", {}, err instanceof ServerDown ? "Server down. " : "Error. "),
      err.message, " ", retry);
    return;
  }
  $("status").textContent = "";
  const select = $("library");
  select.replaceChildren(...state.libraries.map((lib) =>
    el("option", { value: lib.library_name }, `${lib.library_name} (${lib.image_count})`)));
  if (!state.libraries.length) {
    formEnabled(false);
    notice("empty",
      el("b", {}, "No image library yet: create a library first."), " From a shell on the server:",
      el("pre", {}, "lookalike library create photos\nlookalike import photos ~/Pictures"),
      "or build the demo library from sample photos: ", el("code", {}, "lookalike demo --no-serve"), ". Then ",
      el("button", { type: "button", onclick: loadLibraries }, "reload"), ".");
    return;
  }
  clearNotice();
  formEnabled(true);
  const saved = localStorage.getItem("lookalike.library");
  if (state.libraries.some((l) => l.library_name === saved)) select.value = saved;
  await libraryChanged();
}

function currentLibrary() {
  return state.libraries.find((l) => l.library_name === $("library").value);
}

function applyMode() {
  const lib = currentLibrary();
  const itemSearch = lib && lib.mode === "item_search";
  $("text").disabled = Boolean(itemSearch);
  $("text-note").hidden = !itemSearch;
  if (itemSearch) $("text").value = "";
}

async function libraryChanged() {
  const lib = currentLibrary();
  if (!lib) return;
  localStorage.setItem("lookalike.library", lib.library_name);
  $("library-info").textContent = `${lib.mode} · ${lib.image_count} images · ${lib.model}`;
  $("library-info").dataset.mode = lib.mode;
  if (lib.image_count === 0) {
    notice("empty", el("b", {}, `Library "${lib.library_name}" has no images yet.`), " Import a folder, CSV or JSONL:",
      el("pre", {}, `lookalike import ${lib.library_name} ~/Pictures`), "then ",
      el("button", { type: "button", onclick: loadLibraries }, "reload"), ".");
  } else if ($("notice").classList.contains("empty")) clearNotice();
  applyMode();
  if (state.similar) clearImage();
  state.tagSamples = [];
  try {  // tag keys for the filter builder: from a sample of the library's images
    const { data } = await request(`${API}/libraries/${encodeURIComponent(lib.library_name)}/images?limit=200`);
    const seen = new Map();
    for (const image of data.data || []) {
      for (const [k, v] of Object.entries(image.tags || {})) if (!seen.has(k)) seen.set(k, v);
    }
    state.tagSamples = [...seen.entries()];
  } catch { /* the builder still works without suggestions */ }
  $("tag-keys").replaceChildren(...state.tagSamples.map(([k]) => el("option", { value: k })));
  fillExamples();
}

$("library").addEventListener("change", libraryChanged);
$("reload").addEventListener("click", loadLibraries);

// -- query image -------------------------------------------------------------------------------

async function setImage(file) {
  try {
    state.image = await prepareImage(file);
  } catch (err) {
    $("status").textContent = "";
    showError(err.message);
    return;
  }
  state.similar = null;
  showPreview(state.image.url, `query image: ${state.image.note}`);
  drawBoxes(null);
}

function showPreview(src, info) {
  $("preview-img").src = src;
  $("preview-info").textContent = info;
  $("preview").hidden = false;
  $("drop-empty").hidden = true;
}

function clearImage() {
  state.image = null;
  state.similar = null;
  $("preview").hidden = true;
  $("drop-empty").hidden = false;
  $("preview-img").removeAttribute("src");
  drawBoxes(null);
}

dropZone($("drop"), $("image"), setImage, imagesActive);
$("clear-image").addEventListener("click", (e) => { e.stopPropagation(); clearImage(); });

// -- segments ------------------------------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";

function drawBoxes(segments, chosen = null) {
  const svg = $("boxes");
  svg.replaceChildren();
  if (!segments || !state.image) return;
  svg.setAttribute("viewBox", `0 0 ${state.image.width} ${state.image.height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  for (const s of segments) {
    const { x, y, width, height } = s.bbox;
    const rect = document.createElementNS(SVG, "rect");
    for (const [k, v] of Object.entries({ x, y, width, height })) rect.setAttribute(k, v);
    rect.setAttribute("data-segment", s.index);
    if (s.index === chosen) rect.classList.add("chosen");
    const title = document.createElementNS(SVG, "title");
    title.textContent = `item ${s.index + 1}: ${s.results.length} results`;
    rect.append(title);
    rect.addEventListener("click", (e) => { e.stopPropagation(); chooseSegment(s.index); });
    // Sizes in the image's own pixels, so the label reads the same on a small or a large query.
    const unit = Math.max(state.image.width, state.image.height) / 300;
    const label = document.createElementNS(SVG, "text");
    label.setAttribute("x", x + 4 * unit);
    label.setAttribute("y", y + 16 * unit);
    label.setAttribute("font-size", 14 * unit);
    label.setAttribute("stroke-width", 3 * unit);
    label.textContent = String(s.index + 1);
    svg.append(rect, label);
  }
}

function segmentTabs(segments, chosen) {
  const bar = $("segment-tabs");
  if (!segments) { bar.hidden = true; bar.replaceChildren(); return; }
  const tab = (index, text) => el("button", {
    type: "button", role: "tab", "aria-selected": String(index === chosen), "data-segment": index ?? "all",
    onclick: () => chooseSegment(index),
  }, text);
  bar.replaceChildren(tab(null, `All items (${segments.length})`),
    ...segments.map((s) => tab(s.index, `Item ${s.index + 1}${s.label ? ` · ${s.label}` : ""}`)));
  bar.hidden = false;
}

function chooseSegment(index) {
  segmentTabs(state.segments, index);
  drawBoxes(state.segments, index);
  if (index === null) showResults(state.merged, `${state.merged.length} results, all items merged`);
  else {
    const s = state.segments[index];
    const { width, height } = s.bbox;
    showResults(s.results, `${s.results.length} results for item ${index + 1} (${width}×${height} px)`);
  }
}

// -- tag_filter builder --------------------------------------------------------------------------

function conditionRow(cond = {}) {
  const type = typeof cond.value === "number" || (Array.isArray(cond.value) && typeof cond.value[0] === "number")
    ? "number" : typeof cond.value === "boolean" ? "boolean" : "text";
  const value = Array.isArray(cond.value) ? cond.value.join(", ") : cond.value ?? "";
  const row = el("div", { class: "condition" },
    el("input", { name: "field", placeholder: "tag", list: "tag-keys", value: cond.field ?? "", "aria-label": "tag" }),
    el("select", { name: "op", "aria-label": "operator" },
      ...OPS.map((op) => el("option", { value: op, selected: op === (cond.op || "=") }, op))),
    el("input", { name: "value", placeholder: "value (in: a, b, c)", value: String(value), "aria-label": "value" }),
    el("select", { name: "type", "aria-label": "value type" },
      ...["text", "number", "boolean"].map((t) => el("option", { value: t, selected: t === type }, t))),
    el("button", { type: "button", "aria-label": "remove condition", onclick: () => { row.remove(); writeFilter(); } }, "×"));
  row.addEventListener("input", writeFilter);
  row.addEventListener("change", writeFilter);
  $("conditions").append(row);
  return row;
}

function typed(text, type) {
  if (type === "number") {
    const n = Number(text);
    if (text.trim() === "" || !Number.isFinite(n)) throw new Error(`"${text}" is not a number`);
    return n;
  }
  if (type === "boolean") {
    if (!["true", "false"].includes(text.trim())) throw new Error(`"${text}" is not true or false`);
    return text.trim() === "true";
  }
  return text;
}

/** The builder's rows as tag_filter JSON in the text box (the box is what is sent). */
function writeFilter() {
  const rows = [...$("conditions").children];
  $("filter-error").textContent = "";
  if (!rows.length) { $("tag-filter").value = ""; summarise(); return; }
  const conditions = [];
  rows.forEach((row, i) => {
    const get = (name) => row.querySelector(`[name=${name}]`).value;
    const op = get("op");
    let value;
    try {
      value = op === "in" || op === "not_in"
        ? get("value").split(",").map((v) => v.trim()).filter((v) => v !== "").map((v) => typed(v, get("type")))
        : typed(get("value"), get("type"));
    } catch (err) {
      $("filter-error").textContent = `condition ${i + 1}: ${err.message}`;
      value = get("value");
    }
    conditions.push({ field: get("field").trim(), op, value });
  });
  const filter = $("filter-join").value === "or" && conditions.length > 1 ? { or: conditions } : conditions;
  $("tag-filter").value = JSON.stringify(filter);
  summarise();
}

/** The text box's tag_filter: undefined when empty; throws with a readable message when not JSON. */
function readFilter() {
  const text = $("tag-filter").value.trim();
  if (!text) return undefined;
  let value;
  try { value = JSON.parse(text); } catch (err) { throw new Error(`tag_filter: not valid JSON (${err.message})`); }
  if (value === null || typeof value !== "object") throw new Error("tag_filter: must be a JSON array (AND) or an object");
  return value;
}

function summarise() {
  let text = "";
  try {
    const f = readFilter();
    $("filter-error").textContent ||= "";
    if (f !== undefined) text = Array.isArray(f) ? `(${f.length} condition${f.length === 1 ? "" : "s"})` : "(1 expression)";
  } catch (err) { text = "(invalid JSON)"; }
  $("filter-summary").textContent = text;
}

function examples() {
  const [k, v] = state.tagSamples.find(([, value]) => typeof value === "string") || ["color", "red"];
  const num = state.tagSamples.find(([, value]) => typeof value === "number");
  const list = [
    [`${k} = "${v}"`, [{ field: k, op: "=", value: v }]],
    [`${k} != "${v}"`, [{ field: k, op: "!=", value: v }]],
    ["OR of two conditions", { or: [{ field: k, op: "=", value: v }, { field: "color", op: "in", value: ["red", "blue"] }] }],
    ["AND with nested OR", [{ field: "category", op: "!=", value: "pants" },
      { or: [{ field: "color", op: "=", value: "red" }, { field: "season", op: "=", value: "summer" }] }]],
  ];
  if (num) list.splice(2, 0, [`${num[0]} >= ${num[1]}`, [{ field: num[0], op: ">=", value: num[1] }]]);
  return list;
}

function fillExamples() {
  $("filter-examples").replaceChildren(el("option", { value: "" }, "—"),
    ...examples().map(([name], i) => el("option", { value: String(i) }, name)));
}

$("filter-examples").addEventListener("change", (e) => {
  const chosen = examples()[Number(e.target.value)];
  if (!chosen) return;
  $("conditions").replaceChildren();
  $("tag-filter").value = JSON.stringify(chosen[1], null, 1);
  $("filter-error").textContent = "";
  summarise();
  e.target.value = "";
});
$("add-condition").addEventListener("click", () => { conditionRow(); writeFilter(); });
$("filter-join").addEventListener("change", writeFilter);
$("tag-filter").addEventListener("input", () => {
  $("conditions").replaceChildren(); // a hand-edited filter is the filter; the rows would overwrite it
  try { readFilter(); $("filter-error").textContent = ""; } catch (err) { $("filter-error").textContent = err.message; }
  summarise();
});

// -- search --------------------------------------------------------------------------------------

function showError(message) {
  $("results").replaceChildren(el("p", { class: "notice error", role: "alert" }, message));
  $("results-title").textContent = "";
}

async function search(event) {
  event?.preventDefault();
  const lib = currentLibrary();
  if (!lib) return;
  let tagFilter;
  try { tagFilter = readFilter(); } catch (err) {
    $("filter-box").open = true;
    $("filter-error").textContent = err.message;
    showError(err.message);
    return;
  }
  const topK = Number($("top-k").value);
  const common = { library_name: lib.library_name, top_k: topK };
  if (tagFilter !== undefined) common.tag_filter = tagFilter;
  let path, body, what;
  const segmented = $("segments").checked;
  const image = state.image;
  if (state.similar) {
    [path, body, what] = ["by-image-id", { ...common, image_id: state.similar }, `like ${state.similar}`];
  } else if (image) {
    body = { ...common, search_crop_type: $("crop-type").value };
    if (segmented) Object.assign(body, { use_segmentation: true, return_segments: true });
    [path, what] = ["by-image", "for the query image"];
  } else if ($("text").value.trim()) {
    [path, body, what] = ["by-text", { ...common, query_text: $("text").value.trim() }, `for "${$("text").value.trim()}"`];
  } else {
    showError(lib.mode === "item_search" ? "Add a query image to search this item_search library."
      : "Type a description or add a query image.");
    return;
  }
  $("go").disabled = true;
  $("results").setAttribute("aria-busy", "true");
  busy($("status"), "searching…");
  const started = performance.now();
  try {
    if (path === "by-image") body.image_base64 = await toBase64(image.blob);
    const { data } = await request(`${API}/search/${path}`, { method: "POST", body });
    if ($("notice").classList.contains("down")) clearNotice();  // the server is back
    const ms = Math.round(performance.now() - started);
    $("status").textContent = `${ms} ms`;
    state.merged = data.data.results;
    state.segments = data.data.segments || null;
    segmentTabs(state.segments, null);
    drawBoxes(state.segments, null);
    showResults(state.merged, `${state.merged.length} result${state.merged.length === 1 ? "" : "s"} ${what}`
      + (state.segments ? `, ${state.segments.length} item${state.segments.length === 1 ? "" : "s"} detected` : ""));
  } catch (err) {
    $("status").textContent = "";
    state.segments = null;
    segmentTabs(null);
    drawBoxes(null);
    showError(err instanceof ApiError ? `${err.status}: ${err.message}` : err.message);
    if (err instanceof ServerDown) notice("down", el("b", {}, "Server down. "), err.message, " ",
      el("button", { type: "button", onclick: loadLibraries }, "Retry"));
  } finally {
    $("go").disabled = false;
    $("results").removeAttribute("aria-busy");
  }
}

$("search").addEventListener("submit", search);

function band(score) {
  return score >= 0.9 ? ["same", "same item"] : score >= 0.7 ? ["similar", "similar"] : ["weak", ""];
}

function showResults(results, title) {
  const lib = currentLibrary();
  $("results-title").textContent = title;
  if (!results.length) {
    $("results").replaceChildren(el("p", { class: "hint" },
      "No results. An empty list is a valid answer: loosen the filter or try another query."));
    return;
  }
  $("results").replaceChildren(...results.map((r, rank) => {
    const [cls, word] = band(r.score);
    const tags = Object.entries(r.tags || {}).slice(0, 4).map(([k, v]) => el("span", { class: "tag" }, `${k}: ${v}`));
    return el("figure", {
      class: "card", tabindex: "0", "data-id": r.image_id, "data-rank": rank,
      onclick: () => openDetail(lib.library_name, r),
      onkeydown: (e) => { if (e.key === "Enter") openDetail(lib.library_name, r); },
    },
    el("img", { src: thumbUrl(lib.library_name, r.image_id, 320), alt: r.image_id, loading: "lazy",
      onerror: (e) => { e.target.removeAttribute("src"); e.target.title = "no thumbnail"; } }),
    el("figcaption", {},
      el("span", { class: `score ${cls}`, title: "0..1: above 0.9 the same item, 0.7..0.9 similar" }, r.score.toFixed(3)),
      word ? ` ${word}` : "", r.segment !== undefined ? el("span", { class: "tag" }, ` item ${r.segment + 1}`) : "",
      el("div", { class: "id" }, r.image_id),
      el("div", { class: "tags" }, ...tags)));
  }));
}

// -- detail and "more like this" -----------------------------------------------------------------

let detailImage = null;

function openDetail(library, result) {
  detailImage = { library, id: result.image_id };
  $("detail-img").src = thumbUrl(library, result.image_id, 768);
  $("detail-img").alt = result.image_id;
  $("detail-title").textContent = result.image_id;
  $("detail-score").textContent = `score ${result.score.toFixed(3)}`;
  $("detail-uri").textContent = result.image_uri ? `uri: ${result.image_uri}` : "";
  $("detail-tags").replaceChildren(...Object.entries(result.tags || {}).map(([k, v]) =>
    el("tr", {}, el("td", {}, k), el("td", {}, JSON.stringify(v)))));
  $("detail").showModal();
}

$("more-like-this").addEventListener("click", () => {
  $("detail").close();
  if (!detailImage) return;
  state.image = null;
  state.similar = detailImage.id;
  drawBoxes(null);
  showPreview(thumbUrl(detailImage.library, detailImage.id, 512), `more like ${detailImage.id} (a stored image)`);
  search();
});

loadLibraries();

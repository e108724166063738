// Shared by the page's tabs: HTTP calls with readable errors, query-image preparation, drop zones.

export const API = "/api/v1/operators/image-search";

/** The server could not be reached at all (down, restarting, network gone). */
export class ServerDown extends Error {}

/** The server answered an error: `status` is the HTTP code, `message` the server's own words. */
export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

/**
 * fetch() a JSON endpoint. Resolves to the decoded body of a 2xx answer; rejects with
 * ServerDown (no answer) or ApiError (the envelope's or Modash's `message`, else the HTTP status).
 */
export async function request(url, { method = "GET", body, headers = {} } = {}) {
  let response;
  try {
    response = await fetch(url, {
      method,
      headers: body === undefined ? headers : { "content-type": "application/json", ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ServerDown(`Cannot reach the Lookalike server at ${location.origin}: is "lookalike serve" running?`);
  }
  let data = null;
  try { data = await response.json(); } catch { /* not JSON: keep null */ }
  if (!response.ok) {
    const detail = data && (data.message || data.detail);
    const text = typeof detail === "string" ? detail : `HTTP ${response.status} ${response.statusText}`;
    throw new ApiError(response.status, text, data);
  }
  return { data, headers: response.headers };
}

/** Element helper: el("div", {class: "x"}, child, "text"). Text is always set as text, never HTML. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c);
  return node;
}

/** URL of a stored image's thumbnail; ids may hold "/", so the whole id is one encoded segment. */
export function thumbUrl(library, imageId, size = 320) {
  return `${API}/libraries/${encodeURIComponent(library)}/images/${encodeURIComponent(imageId)}/thumbnail?size=${size}`;
}

//: Largest side and size sent as is; larger photos (phones make 4000 px, 5+ MB) are downscaled
//: here first: the server decodes at about 520 px anyway, and its query limit is 5 MB.
export const MAX_SIDE = 1600;
export const MAX_BYTES = 1.5 * 1024 * 1024;
const SENDABLE = ["image/jpeg", "image/png", "image/webp"];

function loadImage(blob) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("this file is not an image the browser can read"));
    img.src = URL.createObjectURL(blob);
  });
}

/**
 * Ready a picked, dropped or pasted image for sending: {blob, type, width, height, note, url}.
 * Images over MAX_SIDE px or MAX_BYTES bytes, and formats not in `accepted`, are re-encoded by a
 * canvas as JPEG (quality 0.9) at most MAX_SIDE px on the longest side; others go as they are.
 */
export async function prepareImage(file, accepted = SENDABLE) {
  const img = await loadImage(file);
  const { naturalWidth: w, naturalHeight: h } = img;
  const scale = Math.min(1, MAX_SIDE / Math.max(w, h));
  if (scale === 1 && file.size <= MAX_BYTES && accepted.includes(file.type)) {
    return { blob: file, type: file.type, width: w, height: h, url: img.src, note: `${w}×${h}, ${kb(file.size)}` };
  }
  const width = Math.max(1, Math.round(w * scale));
  const height = Math.max(1, Math.round(h * scale));
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff"; // transparent PNGs: white, as the server composites them
  ctx.fillRect(0, 0, width, height);
  ctx.drawImage(img, 0, 0, width, height);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
  URL.revokeObjectURL(img.src);
  return {
    blob, type: "image/jpeg", width, height, url: URL.createObjectURL(blob),
    note: `downscaled in the browser from ${w}×${h}, ${kb(file.size)} to ${width}×${height}, ${kb(blob.size)}`,
  };
}

export function kb(bytes) {
  return bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(1)} MB` : `${Math.max(1, Math.round(bytes / 1024))} KB`;
}

/** The blob's bytes as plain base64 (no data: prefix). */
export function toBase64(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",")[1]);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

/**
 * Wire a drop zone: drag & drop, a file input, and paste (while `isActive()`), calling
 * `onFile(file)` with the first image file.
 */
export function dropZone(zone, input, onFile, isActive) {
  const first = (files) => [...(files || [])].find((f) => f.type.startsWith("image/"));
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const file = first(e.dataTransfer.files);
    if (file) onFile(file);
  });
  zone.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
  input.addEventListener("change", () => { if (input.files[0]) onFile(input.files[0]); input.value = ""; });
  document.addEventListener("paste", (e) => {
    if (!isActive()) return;
    const file = first([...(e.clipboardData?.items || [])].filter((i) => i.kind === "file").map((i) => i.getAsFile()));
    if (file) { e.preventDefault(); onFile(file); }
  });
}

/** A small "working…" indicator for a status line. */
export function busy(node, text) {
  node.replaceChildren(el("span", { class: "spinner", "aria-hidden": "true" }), ` ${text}`);
}

// The "Creators" tab: Instagram / TikTok creators whose posts look like an image, through the
// Modash-compatible API at /v1 (a Bearer token, Modash's filters and pages, matched posts).
import { ApiError, ServerDown, busy, dropZone, el, prepareImage, request, toBase64 } from "./common.js";

const $ = (id) => document.getElementById(id);
const state = { image: null, page: 0, total: 0, pageSize: 6, locations: new Map(), suggested: new Map() };
const ENDPOINTS = { instagram: "/v1/ai/image-search", tiktok: "/v1/ai/tiktok/image-search" };

$("token").value = localStorage.getItem("lookalike.token") || "";
$("token").addEventListener("change", () => localStorage.setItem("lookalike.token", $("token").value.trim()));
$("platform").addEventListener("change", () => { $("page-size-label").hidden = $("platform").value !== "tiktok"; });

async function setImage(file) {
  try {
    state.image = await prepareImage(file);
  } catch (err) {
    fail(err.message);
    return;
  }
  $("c-preview-img").src = state.image.url;
  $("c-preview-info").textContent = `query image: ${state.image.note}`;
  $("c-preview").hidden = false;
  $("c-drop-empty").hidden = true;
}

dropZone($("c-drop"), $("c-image"), setImage, () => !$("panel-creators").hidden);
$("c-clear").addEventListener("click", (e) => {
  e.stopPropagation();
  state.image = null;
  $("c-preview").hidden = true;
  $("c-drop-empty").hidden = false;
});

/** Modash `filters` from the form; throws a readable message for a bad extra-filters box. */
function filters() {
  const out = {};
  const num = (id) => ($(id).value.trim() === "" ? undefined : Number($(id).value));
  const followers = { min: num("f-followers-min"), max: num("f-followers-max") };
  if (followers.min !== undefined || followers.max !== undefined) out.followersCount = JSON.parse(JSON.stringify(followers));
  if (num("f-engagement") !== undefined) out.engagementRate = { min: num("f-engagement") };
  if (num("f-last-posted") !== undefined) out.lastPostedInDays = num("f-last-posted");
  if ($("f-gender").value) out.gender = $("f-gender").value;
  if ($("f-account").value) out.accountType = $("f-account").value;
  if ($("f-language").value.trim()) out.language = $("f-language").value.trim();
  if ($("f-email").checked) out.hasEmail = true;
  if (state.locations.size) out.locations = [...state.locations.keys()];
  const extra = $("f-extra").value.trim();
  if (extra) {
    let more;
    try { more = JSON.parse(extra); } catch (err) { throw new Error(`more filters: not valid JSON (${err.message})`); }
    if (!more || typeof more !== "object" || Array.isArray(more)) throw new Error("more filters: must be a JSON object");
    Object.assign(out, more);
  }
  return out;
}

// -- locations: Modash filters take dictionary ids; the dictionary endpoint finds them by name ----

let lookup = 0;
$("f-location").addEventListener("input", async () => {
  const text = $("f-location").value.trim();
  const picked = state.suggested.get(text);
  if (picked !== undefined) {  // a suggestion was chosen
    state.locations.set(picked, text);
    $("f-location").value = "";
    showLocations();
    return;
  }
  const token = $("token").value.trim();
  if (text.length < 2 || !token) return;
  const mine = ++lookup;
  try {
    const { data } = await request(`/v1/${$("platform").value}/locations?query=${encodeURIComponent(text)}&limit=8`,
      { headers: { authorization: `Bearer ${token}` } });
    if (mine !== lookup) return;  // a later keystroke's answer wins
    state.suggested = new Map(data.locations.map((l) => [l.title, l.id]));
    $("location-options").replaceChildren(...data.locations.map((l) => el("option", { value: l.title })));
  } catch { /* suggestions are optional: a wrong token shows on search */ }
});

function showLocations() {
  $("f-locations").replaceChildren(...[...state.locations].map(([id, title]) => el("span", { class: "chip", "data-id": id },
    title, el("button", { type: "button", "aria-label": `remove ${title}`,
      onclick: () => { state.locations.delete(id); showLocations(); } }, "×"))));
}

function fail(message) {
  $("c-error").textContent = message;
  $("c-error").hidden = false;
}

async function search(page) {
  $("c-error").hidden = true;
  const platform = $("platform").value;
  const token = $("token").value.trim();
  if (!token) return fail("An API token is needed: create one on the server with  lookalike tokens create --credits 100");
  if (!state.image) return fail("Add a query image: creators are found by the posts that look like it.");
  let body;
  try {
    body = { page, filters: filters(), imageType: state.image.type, base64Image: await toBase64(state.image.blob) };
  } catch (err) {
    return fail(err.message);
  }
  if (platform === "tiktok") body.pageSize = Number($("page-size").value);
  localStorage.setItem("lookalike.token", token);
  $("c-go").disabled = true;
  $("creators").setAttribute("aria-busy", "true");
  busy($("c-status"), "searching creators…");
  try {
    const { data, headers } = await request(ENDPOINTS[platform], {
      method: "POST", body, headers: { authorization: `Bearer ${token}` },
    });
    state.page = page;
    state.total = data.total;
    state.pageSize = platform === "tiktok" ? body.pageSize : 6;
    const credits = headers.get("x-credits-left");
    $("c-status").textContent = `charged ${headers.get("x-credits-charged") ?? "?"} credits` + (credits ? `, ${credits} left` : "");
    show(data.profiles, platform);
  } catch (err) {
    $("c-status").textContent = "";
    const wait = err instanceof ApiError && err.status === 429 ? " (one search a second per token: try again)" : "";
    fail(err instanceof ServerDown ? err.message : `${err.status}: ${err.message}${wait}`);
  } finally {
    $("c-go").disabled = false;
    $("creators").removeAttribute("aria-busy");
  }
}

function number(n) {
  if (n < 0) return "hidden";  // Modash: -1 when the creator hides it
  return n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : String(n);
}

function show(profiles, platform) {
  const pages = Math.max(1, Math.ceil(state.total / state.pageSize));
  $("c-title").textContent = `${state.total} ${platform} creator${state.total === 1 ? "" : "s"} with matching posts`;
  $("c-page").textContent = `page ${state.page + 1} of ${pages}`;
  $("c-prev").disabled = state.page === 0;
  $("c-next").disabled = state.page + 1 >= pages;
  if (!profiles.length) {
    $("creators").replaceChildren(el("p", { class: "hint" }, "No creator on this page: loosen the filters."));
    return;
  }
  $("creators").replaceChildren(...profiles.map((p) => el("article", { class: "creator", "data-user": p.userId },
    // Pictures are the creators' own URLs: shown when the browser can reach them, else hidden.
    avatar(p),
    el("div", { class: "who" }, el("b", {}, `@${p.username}`), p.fullName ? ` ${p.fullName}` : "",
      el("span", { class: "hint" }, ` · ${number(p.followersCount)} followers`
        + (p.engagementRate != null ? ` · ER ${(p.engagementRate * 100).toFixed(1)}%` : "")
        + (p.accountCategory ? ` · ${p.accountCategory}` : ""))),
    el("div", {},
      el("div", { class: "hint" }, `${p.matchedPosts.length} matched post${p.matchedPosts.length === 1 ? "" : "s"}`),
      el("div", { class: "posts" }, ...p.matchedPosts.map((post) => el("a", {
        class: "post", href: post.url || undefined, target: "_blank", rel: "noopener noreferrer", "data-post": post.id,
      },
      post.thumbnail ? el("img", { src: post.thumbnail, alt: "", loading: "lazy", onerror: (e) => { e.target.replaceWith(noPicture()); } })
        : noPicture(),
      el("span", {}, post.id), el("span", {}, `♥ ${number(post.stats.likesCount)} · ${number(post.stats.commentsCount)} comments`))))))));
}

function noPicture() {
  return el("div", { class: "no-picture", title: "no thumbnail the browser can reach" }, "post");
}

// Pictures are the creators' own URLs: shown when the browser can reach them, else the initial.
function avatar(p) {
  const initial = el("div", { class: "avatar initial" }, (p.username || "?")[0].toUpperCase());
  if (!p.profilePicture) return initial;
  return el("img", { class: "avatar", src: p.profilePicture, alt: "", onerror: (e) => { e.target.replaceWith(initial); } });
}

$("creator-search").addEventListener("submit", (e) => { e.preventDefault(); search(0); });
$("c-prev").addEventListener("click", () => search(state.page - 1));
$("c-next").addEventListener("click", () => search(state.page + 1));

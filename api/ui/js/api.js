// Every data call goes through here: the key typed by the person, sent as a Bearer header, never in a URL.
const KEY_NAME = "epochal.apiKey";

export const getKey = () => localStorage.getItem(KEY_NAME) || "";
export const setKey = (key) => localStorage.setItem(KEY_NAME, key.trim());
export const forgetKey = () => localStorage.removeItem(KEY_NAME);

export class ApiError extends Error {
  constructor(status, body) {
    super(typeof body?.detail === "string" ? body.detail : body?.message || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

export function authHeaders(extra = {}) {
  return { Authorization: `Bearer ${getKey()}`, ...extra };
}

// fetch() with the key; a JSON body for plain objects; the answer parsed as JSON unless `raw`.
export async function api(path, { method = "GET", json, body, raw = false, signal } = {}) {
  const headers = authHeaders(json !== undefined ? { "Content-Type": "application/json" } : {});
  const response = await fetch(path, {
    method, headers, signal, body: json !== undefined ? JSON.stringify(json) : body,
  });
  if (!response.ok) {
    let detail = null;
    try { detail = await response.json(); } catch { detail = { detail: await response.text().catch(() => "") }; }
    throw new ApiError(response.status, detail);
  }
  return raw ? response : response.json();
}

// Download through fetch (a plain link could not send the key), then hand the bytes to the browser.
export async function download(path, filename) {
  const blob = await (await api(path, { raw: true })).blob();
  const url = URL.createObjectURL(blob);
  const link = Object.assign(document.createElement("a"), { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// Who the key belongs to (GET /me), asked once per key: the pages show write controls to a model's owner or an
// admin only. The API decides anyway; this only spares others buttons that would answer 403.
let me = null;
export function whoAmI() {
  const key = getKey();
  if (!me || me.key !== key) me = { key, answer: api("/me").catch((error) => { me = null; throw error; }) };
  return me.answer;
}

// A model's path, its name encoded (names may hold '.', which is safe, but the rule belongs in one place).
export const modelPath = (name, rest = "") => `/models/${encodeURIComponent(name)}${rest}`;

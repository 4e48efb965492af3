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

// fetch() with the key; a JSON body for plain objects; the answer parsed as JSON unless `raw` (null for a 204).
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
  if (raw) return response;
  return response.status === 204 ? null : response.json();
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
export const datasetPath = (name, rest = "") => `/datasets/${encodeURIComponent(name)}${rest}`;

// A file sent as the whole body of a POST, with XMLHttpRequest: its upload events report the bytes sent, which
// fetch() does not. `onProgress(sent, total)` follows them. Resolves with the JSON answer, rejects with an ApiError
// (status 0 when no answer came); `signal` aborts it.
export function upload(path, file, { contentType = "application/octet-stream", onProgress = () => {}, signal } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    for (const [name, value] of Object.entries(authHeaders({ "Content-Type": contentType }))) {
      xhr.setRequestHeader(name, value);
    }
    xhr.upload.addEventListener("progress", (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size));
    xhr.upload.addEventListener("load", () => onProgress(file.size, file.size));
    xhr.addEventListener("load", () => {
      let body;
      try { body = JSON.parse(xhr.responseText); } catch { body = { detail: xhr.responseText || `HTTP ${xhr.status}` }; }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, body));
    });
    // The service cuts off an upload over its size limit (a 413) while it is still being sent: the browser may see
    // the connection close before it reads that answer.
    xhr.addEventListener("error", () => reject(new ApiError(0, { detail: "the upload stopped before the service "
      + "answered: the connection was lost, or the file is over the service's upload limit" })));
    xhr.addEventListener("abort", () => reject(new ApiError(0, { detail: "upload cancelled" })));
    signal?.addEventListener("abort", () => xhr.abort());
    xhr.send(file);
  });
}

// Talking to the API: the bearer token (asked once, kept in this tab's
// sessionStorage, sent as a header: never a cookie, never in a URL), errors in
// the API's shape, and who the caller is (SPEC §11) so the page offers only
// what the role allows.

const TOKEN_KEY = "jobd.token";
let prompting = null;
let health = null;

/** An error answer of the API: HTTP status and the {code, message, details} shape. */
export class ApiError extends Error {
  constructor(status, code, message, details = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function authHeaders() {
  const headers = { "X-Jobd-Actor": "web" };
  const value = token();
  if (value) headers.Authorization = `Bearer ${value}`;
  return headers;
}

/**
 * One API call; resolves to the parsed JSON (null for 204). A 401 asks for the
 * token once (every call waiting on the same prompt) and tries again.
 */
export async function api(path, { method = "GET", body, signal } = {}) {
  for (let attempt = 0; ; attempt += 1) {
    const headers = { Accept: "application/json", ...authHeaders() };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method, headers, signal, cache: "no-store",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError(0, "unreachable", "the daemon does not answer (is jobd running?)");
    }
    if (response.status === 401) {
      await askToken(attempt > 0 || token() ? "that token was refused; try again" : "");
      continue;
    }
    return parse(response);
  }
}

async function parse(response) {
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (response.ok) return data;
  const error = (data && data.error) || {};
  throw new ApiError(response.status, error.code || `http-${response.status}`,
    error.message || response.statusText || `HTTP ${response.status}`, error.details || {});
}

/** Show the token dialog; resolves once a token was entered (shared by concurrent callers). */
export function askToken(message = "") {
  if (prompting) return prompting;
  const dialog = document.getElementById("token-dialog");
  const form = document.getElementById("token-form");
  const input = document.getElementById("token-input");
  document.getElementById("token-message").textContent = message;
  prompting = new Promise((resolve) => {
    const submit = (event) => {
      event.preventDefault();
      const value = input.value.trim();
      if (!value) return;
      sessionStorage.setItem(TOKEN_KEY, value);
      input.value = "";
      form.removeEventListener("submit", submit);
      dialog.close();
      prompting = null;
      health = null;
      resolve();
    };
    form.addEventListener("submit", submit);
    // Escape would leave the page without data and no way back: keep the dialog open.
    dialog.addEventListener("cancel", (event) => event.preventDefault(), { once: true });
  });
  dialog.showModal();
  input.focus();
  return prompting;
}

/**
 * ``jobd ui`` opens the page at ``/#secret=...``: trade that one-time secret for a
 * session token (the fragment never reaches a server log or a Referer), then
 * drop it from the address bar and the history.
 */
export async function redeemSecret() {
  const match = /^#secret=([A-Za-z0-9_-]+)$/.exec(location.hash);
  if (!match) return;
  history.replaceState(null, "", location.pathname + location.search);
  const response = await fetch("/ui/session", {
    method: "POST", cache: "no-store",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ secret: match[1] }),
  });
  if (response.ok) {
    const data = await response.json();
    sessionStorage.setItem(TOKEN_KEY, data.token);
  }
}

/** ``GET /v1/health`` with the token (the daemon says who the caller is and their role). */
export async function whoami() {
  if (!health) health = await api("/v1/health");
  return health;
}

/** Forget the cached health answer (after a token was entered). */
export function resetWho() {
  health = null;
}

/** The caller's role: "viewer", "operator" or "admin" (a daemon without roles: admin). */
export function role(info) {
  const value = info && (info.role || (info.caller && info.caller.role));
  return value || "admin";
}

/** May this role ask for ``operation`` (SPEC §11)? */
export function roleAllows(roleName, operation) {
  if (roleName === "viewer") return false;
  if (roleName === "operator") return operation !== "delete" && operation !== "reload";
  return true;
}

// Fetch helpers for the biaslab REST API and the shared way pages show its errors.

/** An HTTP error from the API, with the validation items of a 422 response. */
export class ApiError extends Error {
  constructor(status, message, items) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    // Each item is {field, message}, where field is null when the server names no field.
    this.items = items;
  }
}

// Turn a FastAPI `detail` (a string, or a list of validation items) into {field, message} items.
function detailItems(detail) {
  if (typeof detail === "string") {
    return [{ field: null, message: detail }];
  }
  if (!Array.isArray(detail)) {
    return [];
  }
  return detail.map((item) => ({
    field: typeof item.field === "string" ? item.field : null,
    message: item.message || item.msg || JSON.stringify(item),
  }));
}

async function errorFromResponse(response) {
  const fallback = `${response.status} ${response.statusText || "error"} from ${response.url}`;
  let items = [];
  const type = response.headers.get("content-type") || "";
  if (type.includes("application/json")) {
    try {
      const body = await response.json();
      items = detailItems(body.detail);
    } catch (error) {
      // The body is not valid JSON, so the status line becomes the message.
      items = [];
    }
  }
  const message = items.length ? items.map((item) => item.message).join("\n") : fallback;
  return new ApiError(response.status, message, items);
}

// The sign-in's CSRF token, which the server sets in a cookie that scripts can read.
const CSRF_COOKIE = "biaslab_csrf";
const CSRF_HEADER = "X-CSRF-Token";
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

function csrfToken() {
  for (const part of document.cookie.split(";")) {
    const [name, ...value] = part.trim().split("=");
    if (name === CSRF_COOKIE) {
      return decodeURIComponent(value.join("="));
    }
  }
  return null;
}

/** Go to the sign-in page, which comes back to this page after signing in. */
export function redirectToSignIn() {
  if (window.location.pathname === "/signin") {
    return;
  }
  const currentPath = window.location.pathname + window.location.search;
  window.location.assign(`/signin?next=${encodeURIComponent(currentPath)}`);
}

/**
 * Send a request and return the response; throws ApiError unless the status is 2xx.
 * State-changing requests carry the CSRF token. A 401 response (no sign-in, or an
 * expired one) leads to the sign-in page unless `options.signInRedirect` is false.
 */
export async function request(url, options = {}) {
  const { signInRedirect = true, ...fetchOptions } = options;
  const method = (fetchOptions.method || "GET").toUpperCase();
  const headers = new Headers(fetchOptions.headers || {});
  const token = SAFE_METHODS.has(method) ? null : csrfToken();
  if (token) {
    headers.set(CSRF_HEADER, token);
  }
  let response;
  try {
    response = await fetch(url, { ...fetchOptions, headers });
  } catch (error) {
    if (error.name === "AbortError") {
      throw error;
    }
    throw new ApiError(0, `Could not reach the server (${error.message}). Is biaslab serve running?`, []);
  }
  if (response.status === 401 && signInRedirect) {
    redirectToSignIn();
  }
  if (!response.ok) {
    throw await errorFromResponse(response);
  }
  return response;
}

export async function getJson(url, options = {}) {
  const response = await request(url, { ...options, headers: { Accept: "application/json" } });
  return response.json();
}

export async function postJson(url, body, options = {}) {
  const response = await request(url, {
    ...options,
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return response.json();
}

/** POST a JSON body and return the response as a Blob (for image endpoints). */
export async function postForBlob(url, body, options = {}) {
  const response = await request(url, {
    ...options,
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return response.blob();
}

/** Replace the contents of `element` with the error's messages, one per line, as text. */
export function showError(element, error) {
  element.replaceChildren();
  const items = error instanceof ApiError && error.items.length ? error.items : [{ message: error.message }];
  if (items.length === 1) {
    element.textContent = items[0].message;
  } else {
    const list = document.createElement("ul");
    for (const item of items) {
      const entry = document.createElement("li");
      entry.textContent = item.message;
      list.append(entry);
    }
    element.append(list);
  }
  element.hidden = false;
}

export function clearError(element) {
  element.replaceChildren();
  element.hidden = true;
}

/**
 * Parse an API timestamp. SQLite returns datetimes without a zone although the
 * store writes UTC, so a string with no offset is read as UTC, not local time.
 */
export function parseTimestamp(text) {
  if (!text) {
    return null;
  }
  const hasZone = /(Z|[+-]\d\d:?\d\d)$/.test(text);
  const date = new Date(hasZone ? text : `${text}Z`);
  return Number.isNaN(date.getTime()) ? null : date;
}

export function formatTimestamp(text) {
  const date = parseTimestamp(text);
  return date ? date.toLocaleString() : "—";
}

export const ENDED_STATUSES = new Set(["succeeded", "failed", "cancelled"]);

// Talking to the service: fetch with the session's API key, and its one error body as an ApiError.
export const KEY_STORAGE = "explain.apiKey";

export class ApiError extends Error {
  constructor(status, code, message, retryAfter, requestId) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
    this.requestId = requestId;
  }
}

function authHeaders() {
  const key = sessionStorage.getItem(KEY_STORAGE);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

export async function request(url, options = {}) {
  let response;
  try {
    response = await fetch(url, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  } catch (err) {
    throw new ApiError(0, "network", "The service cannot be reached. Is it running?", null, null);
  }
  if (!response.ok) {
    throw await apiError(response);
  }
  return response;
}

async function apiError(response) {
  let code = "http_error";
  let message = `${response.status} ${response.statusText}`;
  let requestId = response.headers.get("X-Request-ID");
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code;
      message = body.error.message;
      requestId = body.error.request_id || requestId;
    }
  } catch (err) {
    // not the service's error body (a proxy's page): keep the status line
  }
  return new ApiError(response.status, code, message, response.headers.get("Retry-After"), requestId);
}

export async function getJSON(url) {
  return (await request(url)).json();
}

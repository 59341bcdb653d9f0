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

export async function followJob(id, signal, onEvent) {
  // A job's Server-Sent Events, read with fetch (EventSource cannot send the API key header): `onEvent(name, job)`
  // for each, until it returns true (the job has ended) or the stream closes.
  const response = await request(`/v1/jobs/${id}/events`, { signal, headers: { Accept: "text/event-stream" } });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length && onEvent(name, JSON.parse(data.join("\n")))) return;
    }
  }
}

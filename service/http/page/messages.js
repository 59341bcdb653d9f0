// Errors shown as messages a person understands, from the service's error body.
import { ApiError } from "./api.js";

const $ = (id) => document.getElementById(id);

function describe(err) {
  if (!(err instanceof ApiError)) {
    return `Something went wrong in the page: ${err.message}`;
  }
  const retry = err.retryAfter ? ` Try again in ${err.retryAfter} s.` : " Try again in a moment.";
  switch (err.status) {
    case 0:
      return err.message;
    case 401:
      return err.code === "invalid_api_key"
        ? "The service did not accept this API key. Enter a valid key above."
        : "The service needs an API key. Enter it above; it is kept for this tab only.";
    case 413:
      return `The image is too large for the service: ${err.message}. Send a smaller file or fewer pixels.`;
    case 415:
      return err.code === "unsupported_image"
        ? "This file is not an image the service can read (JPEG, PNG, WebP, GIF, BMP or TIFF)."
        : `The service refused the request's format: ${err.message}`;
    case 422:
      return `The image could not be decoded (empty, truncated or corrupt): ${err.message}`;
    case 429:
      return `Too many requests right now.${retry}`;
    case 503:
      return `The service is busy or not ready (${err.code}).${retry}`;
    case 504:
      return `The service took too long (${err.message}). Choose cheaper methods or fewer classes.`;
    default:
      return `${err.message} (${err.code}${err.requestId ? `, request ${err.requestId}` : ""})`;
  }
}

export function showError(err) {
  const box = $("message");
  box.textContent = describe(err);
  box.hidden = false;
  if (err instanceof ApiError && err.status === 401) {
    $("key-box").hidden = false;
    $("api-key").focus();
  }
}

export function clearMessage() {
  $("message").hidden = true;
  $("message").textContent = "";
}

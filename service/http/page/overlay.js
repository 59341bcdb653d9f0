// Overlays drawn in the browser from the raw map, as the service draws them: the map ReLU'd and min-max
// normalised, upsampled bilinearly (pixel centres aligned, as Pillow resizes), looked up in the same 256-entry
// colormap and mixed as image * (1 - a) + colour * a. So opacity and colormap change without a request.
export const OVERLAY_MAX_SIDE = 512; // the service's default overlay size

export function displayImage(bitmap) {
  // The picture the overlays are drawn on: the image as sent, its long side at most OVERLAY_MAX_SIDE.
  const scale = Math.min(1, OVERLAY_MAX_SIDE / Math.max(bitmap.width, bitmap.height));
  const width = Math.max(1, Math.round(bitmap.width * scale));
  const height = Math.max(1, Math.round(bitmap.height * scale));
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0, width, height);
  return { width, height, pixels: context.getImageData(0, 0, width, height).data, scale };
}

export function decodeMap(map) {
  // extent: the fraction [of the height, of the width] of the map that the image covers (a detector's letterbox).
  const [h, w] = map.shape;
  const extent = map.image_extent ?? [1, 1];
  if (map.data) return { h, w, extent, values: Float32Array.from(map.data.flat()) };
  const bytes = Uint8Array.from(atob(map.data_base64), (c) => c.charCodeAt(0));
  return { h, w, extent, values: new Float32Array(bytes.buffer) }; // little-endian float32, as every browser is
}

export function upsampleNormalised(map, width, height) {
  // ReLU then min-max (a constant map is zeros), then bilinear with pixel centres aligned, as Pillow resizes.
  const { h, w, extent, values } = map;
  let low = Infinity;
  let high = -Infinity;
  const clean = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = Number.isFinite(values[i]) ? Math.max(0, values[i]) : 0;
    clean[i] = v;
    low = Math.min(low, v);
    high = Math.max(high, v);
  }
  const span = high - low;
  for (let i = 0; i < clean.length; i++) clean[i] = span > 1e-12 ? (clean[i] - low) / span : 0;
  const heat = new Float32Array(width * height);
  const sy = (h * extent[0]) / height; // the image covers the map's top-left extent, as Pillow's resize box
  const sx = (w * extent[1]) / width;
  for (let y = 0; y < height; y++) {
    const fy = Math.min(h - 1, Math.max(0, (y + 0.5) * sy - 0.5));
    const y0 = Math.floor(fy);
    const y1 = Math.min(h - 1, y0 + 1);
    const dy = fy - y0;
    for (let x = 0; x < width; x++) {
      const fx = Math.min(w - 1, Math.max(0, (x + 0.5) * sx - 0.5));
      const x0 = Math.floor(fx);
      const x1 = Math.min(w - 1, x0 + 1);
      const dx = fx - x0;
      const top = clean[y0 * w + x0] * (1 - dx) + clean[y0 * w + x1] * dx;
      const bottom = clean[y1 * w + x0] * (1 - dx) + clean[y1 * w + x1] * dx;
      heat[y * width + x] = top * (1 - dy) + bottom * dy;
    }
  }
  return heat;
}

export function draw(cell, alpha, table) {
  const { canvas, display, heat, explanation } = cell;
  const context = canvas.getContext("2d");
  const out = context.createImageData(display.width, display.height);
  const src = display.pixels;
  for (let i = 0, p = 0; i < heat.length; i++, p += 4) {
    const level = Math.round(heat[i] * 255) * 3;
    out.data[p] = src[p] * (1 - alpha) + table[level] * alpha;
    out.data[p + 1] = src[p + 1] * (1 - alpha) + table[level + 1] * alpha;
    out.data[p + 2] = src[p + 2] * (1 - alpha) + table[level + 2] * alpha;
    out.data[p + 3] = 255;
  }
  context.putImageData(out, 0, 0);
  const box = explanation.bbox;
  if (box) {
    const s = display.scale;
    context.strokeStyle = "#00ff66";
    context.lineWidth = Math.max(3, Math.round(display.width / 120));
    context.strokeRect(box.x0 * s, box.y0 * s, (box.x1 - box.x0) * s, (box.y1 - box.y0) * s);
  }
  if (cell.box) {
    // A detection's box, [x0, y0, x1, y1] in the image's pixels: white inside black, as the service's overlays.
    const [x0, y0, x1, y1] = cell.box.map((v) => v * display.scale);
    context.lineWidth = 1;
    context.strokeStyle = "#000000";
    context.strokeRect(x0 - 1, y0 - 1, x1 - x0 + 2, y1 - y0 + 2);
    context.lineWidth = 2;
    context.strokeStyle = "#ffffff";
    context.strokeRect(x0, y0, x1 - x0, y1 - y0);
  }
}

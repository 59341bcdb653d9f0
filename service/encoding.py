"""Encoding results for the wire: normalised maps, colourised overlays as PNG, and base64.

Maps are colourised and blended as tensors with a 256-entry colormap lookup; runs in the CPU thread pool.
"""

import base64
import io
import json
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

COLORMAP_FILE = Path(__file__).with_name("colormaps.json")


@cache
def colormap_table(name: str) -> torch.Tensor:
    """The 256-entry RGB lookup table (256, 3) uint8 of a colormap (sampled from matplotlib's)."""
    tables = json.loads(COLORMAP_FILE.read_text())
    return torch.frombuffer(bytearray.fromhex(tables[name]), dtype=torch.uint8).view(256, 3)


def colormap_names() -> list[str]:
    return sorted(json.loads(COLORMAP_FILE.read_text()))


def normalize_map(raw: torch.Tensor) -> torch.Tensor:
    """(h, w) raw map -> (h, w) in [0, 1]: ReLU, then min-max; a constant or non-finite map gives zeros."""
    heat = torch.nan_to_num(raw.float(), nan=0.0, posinf=0.0, neginf=0.0).clamp(min=0)
    heat = heat - heat.min()
    peak = heat.max()
    if not torch.isfinite(peak) or peak <= 1e-12:
        return torch.zeros_like(heat)
    return heat / peak


def encode_overlay_png(display: np.ndarray, raw_map: torch.Tensor, colormap: str, alpha: float) -> bytes:
    """Blend the colourised map on the picture: (H, W, 3) uint8 and (h, w) map -> PNG bytes of (H, W, 3)."""
    height, width = display.shape[:2]
    heat = normalize_map(raw_map)[None, None]
    heat = F.interpolate(heat, size=(height, width), mode="bilinear", align_corners=False)[0, 0].clamp(0, 1)
    colors = colormap_table(colormap)[(heat * 255).round().long()].float()
    picture = torch.from_numpy(display).float()
    blended = ((1 - alpha) * picture + alpha * colors).round().clamp(0, 255).to(torch.uint8)
    buffer = io.BytesIO()
    Image.fromarray(blended.numpy()).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def encode_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode_base64_image(text: str) -> bytes:
    """Base64 text of an image -> bytes. Accepts a `data:*;base64,` prefix (any case), whitespace, missing
    padding and the URL-safe alphabet; refuses any other character.

    Raises:
        ValueError: characters outside the alphabet, or a length that no padding can fix.
    """
    text = text.strip()
    if text[:5].lower() == "data:":
        header, _, text = text.partition(",")
        if not header.lower().endswith(";base64"):
            raise ValueError("a data URL must be base64-encoded (data:<type>;base64,...)")
    compact = "".join(text.split())
    if "-" in compact or "_" in compact:
        compact = compact.replace("-", "+").replace("_", "/")
    compact += "=" * (-len(compact) % 4)
    return base64.b64decode(compact, validate=True)

"""Decoding images: formats, modes, orientation and limits."""

import io
import random
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
import torch
from PIL import Image

from service.core.errors import InvalidImage, InvalidParameter, PayloadTooLarge, ServiceError, UnsupportedMediaType
from service.imaging.decoding import decode_image, decode_mask, to_rgb
from tests.conftest import image_bytes
from tests.crafted_files import png_header, psd_file
from tests.real_server import ROOT
from tests.tiny_models import TINY_PREPROCESSING


def decode(data: bytes, max_pixels: int = 10**7, side: int = 512):
    return decode_image(data, TINY_PREPROCESSING, max_pixels, side)


def test_display_keeps_aspect_ratio_and_long_side_limit():
    decoded = decode(image_bytes(Image.new("RGB", (1000, 250), (200, 10, 10)), "PNG"))
    assert decoded.display.shape == (128, 512, 3) and decoded.size == (1000, 250)
    assert decoded.tensor.shape == (3, 32, 32)


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (60, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    decoded = decode(image_bytes(image, "JPEG", exif=exif.tobytes()))
    assert decoded.size == (20, 60)


def test_sixteen_bit_is_scaled_not_clipped():
    gray = Image.fromarray(np.full((4, 4), 32896, dtype=np.uint16))  # half of 65535
    assert to_rgb(gray).getpixel((0, 0)) == (128, 128, 128)


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_deep_images_become_8_bits_as_the_float64_formula_says(mode):
    """Banded conversion, the same levels as `round(clip(x * scale, 0, 255))` in float64, NaN and
    infinities 0, on a picture taller than one band."""
    rng = np.random.default_rng(0)
    if mode == "F":
        pixels = rng.uniform(-0.2, 1.0, (2100, 600)).astype(np.float32)
        pixels[0, :3] = [np.nan, np.inf, -np.inf]
        scale = 255.0  # values in [0, 1]: scaled by 255
    else:
        dtype = np.uint16 if mode == "I;16" else np.int32
        pixels = rng.integers(0, 70_000 if mode == "I" else 65_536, (2100, 600)).astype(dtype)
        scale = 1 / 257
    image = Image.fromarray(pixels)
    assert image.mode == mode
    expected = np.clip(np.nan_to_num(pixels.astype(np.float64), nan=0, posinf=0, neginf=0) * scale, 0, 255).round()
    assert np.array_equal(np.asarray(to_rgb(image))[..., 0], expected.astype(np.uint8))


def test_a_40_megapixel_16_bit_png_decodes_without_float64_copies(tmp_path):
    """An 8000 x 5000 16-bit PNG (a few hundred KB): the decode's peak memory, measured in a fresh process as the
    growth of its peak resident size, stays under 4x the image's 8-bit RGB size (it took 8x in float64)."""
    width, height = 8000, 5000
    gradient = (np.arange(width * height, dtype=np.uint32) % 65536).astype(np.uint16).reshape(height, width)
    path = tmp_path / "deep.png"
    Image.fromarray(gradient).save(path)
    probe = f"""
from pathlib import Path
from service.imaging.decoding import open_rgb
from tests.tiny_models import TINY_PREPROCESSING

def kib(field):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field))

data = Path({str(path)!r}).read_bytes()
Path("/proc/self/clear_refs").write_text("5")  # resets the peak resident size (VmHWM) to the current one
before = kib("VmRSS:")
rgb, size = open_rgb(data, TINY_PREPROCESSING, 40_000_000, 512)
assert rgb.mode == "RGB" and size == ({width}, {height})
print((kib("VmHWM:") - before) * 1024)
"""
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    grown = int(done.stdout.strip())
    rgb_bytes = width * height * 3
    print(f"peak grew {grown / 1e6:.0f} MB for {rgb_bytes / 1e6:.0f} MB of 8-bit RGB")
    assert grown < 4 * rgb_bytes


def test_transparency_is_composited_on_white():
    assert to_rgb(Image.new("RGBA", (2, 2), (0, 0, 0, 0))).getpixel((0, 0)) == (255, 255, 255)
    assert to_rgb(Image.new("LA", (2, 2), (0, 255))).getpixel((0, 0)) == (0, 0, 0)


def test_first_frame_of_an_animation_is_used():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    assert tuple(decode(buffer.getvalue()).display[0, 0]) == (255, 0, 0)


def test_refusals():
    with pytest.raises(UnsupportedMediaType):
        decode(b"%PDF-1.4 not an image")
    with pytest.raises(InvalidImage):
        decode(b"")
    with pytest.raises(PayloadTooLarge):
        decode(image_bytes(Image.new("L", (200, 200)), "PNG"), max_pixels=1000)


# --- hostile files --------------------------------------------------------------------------------------------


def saved(fmt: str, mode: str = "RGB", size: tuple[int, int] = (16, 16)) -> bytes:
    return image_bytes(Image.new(mode, size), fmt)


NOT_IMAGES = {
    "random bytes": np.random.default_rng(0).bytes(2000),
    "text": b"hello, I am not an image\n" * 20,
    "svg": b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>',
    "pdf": saved("PDF"),
    "zero width": png_header(0, 10),
    "zero height": png_header(10, 0),
}


@pytest.mark.parametrize("name", sorted(NOT_IMAGES))
def test_what_is_not_an_image_of_an_allowed_format_is_unsupported(name):
    with pytest.raises(UnsupportedMediaType) as caught:
        decode(NOT_IMAGES[name])
    assert caught.value.code == "unsupported_image" and "JPEG, PNG" in caught.value.message


OTHER_FORMATS = {
    "PSD": psd_file,
    "EPS": lambda: saved("EPS"),
    "ICO": lambda: saved("ICO"),
    "TGA": lambda: saved("TGA"),
    "PPM": lambda: saved("PPM"),
    "QOI": lambda: saved("QOI"),
    "DDS": lambda: saved("DDS"),
    "SGI": lambda: saved("SGI"),
}


@pytest.mark.parametrize("fmt", sorted(OTHER_FORMATS))
def test_valid_files_of_formats_outside_the_allow_list_are_refused(fmt):
    data = OTHER_FORMATS[fmt]()
    assert Image.open(io.BytesIO(data)).format == fmt  # Pillow would read it...
    with pytest.raises(UnsupportedMediaType):  # ...but the service does not
        decode(data)


@pytest.mark.parametrize(("width", "height"), [(30_000, 30_000), (8_000, 8_000), (2**31 - 1, 2**31 - 1)])
def test_a_decompression_bomb_is_refused_from_its_header_without_allocating_pixels(width, height):
    """Over Pillow's own bomb limit (30000^2), over the service's limit only (8000^2), absurd (2^31-1)^2."""
    bomb = png_header(width, height)
    assert len(bomb) < 20_000
    before = Image.core.get_stats()
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLarge) as caught:
            decode(bomb, max_pixels=40_000_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    after = Image.core.get_stats()
    print(f"{width}x{height}: {len(bomb)} bytes, Python peak {peak / 1e6:.2f} MB, Pillow stats {before} -> {after}")
    assert caught.value.code == "image_too_large"
    assert peak < 5_000_000  # Python and numpy allocations (tracemalloc does not see Pillow's C allocator) ...
    assert after["new_count"] == before["new_count"]  # ... and Pillow created no image core at all
    assert after["allocated_blocks"] == before["allocated_blocks"]
    # the probe works: an image within the limits does allocate
    decode(png_header(64, 64, rows=64))
    assert Image.core.get_stats()["new_count"] > after["new_count"]


def test_thin_and_single_pixel_images_decode():
    for size in ((1, 1), (1, 10_000), (10_000, 1)):
        decoded = decode(image_bytes(Image.new("RGB", size, (9, 9, 9)), "PNG"))
        assert decoded.size == size and decoded.tensor.shape == (3, 32, 32)
        assert max(decoded.display.shape[:2]) == min(max(size), 512) and torch.isfinite(decoded.tensor).all()


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "TIFF", "WEBP"])
def test_only_the_first_frame_of_a_multi_frame_file_is_used(fmt):
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    extra = {"lossless": True} if fmt == "WEBP" else {}
    data = image_bytes(frames[0], fmt, save_all=True, append_images=frames[1:], **extra)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    assert tuple(decode(data).display[0, 0]) == (255, 0, 0)


def palette_image() -> Image.Image:
    image = Image.new("P", (8, 8), 0)
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    return image


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (image_bytes(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", quality=100), (255, 0, 0)),
        (image_bytes(Image.fromarray(np.full((4, 4), 32896, dtype=np.uint16)), "PNG"), (128, 128, 128)),
        (image_bytes(Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16)), "PNG"), (255, 255, 255)),
        (image_bytes(Image.fromarray(np.full((4, 4), 1000, dtype=np.uint16)), "PNG"), (4, 4, 4)),
        (image_bytes(palette_image(), "PNG", transparency=0), (255, 255, 255)),
        (image_bytes(palette_image(), "GIF", transparency=0), (255, 255, 255)),
        (image_bytes(palette_image(), "PNG", transparency=1), (255, 0, 0)),
        (image_bytes(Image.new("RGB", (8, 8), (1, 2, 3)), "PNG", transparency=(1, 2, 3)), (255, 255, 255)),
        (image_bytes(Image.new("L", (8, 8), 7), "PNG", transparency=7), (255, 255, 255)),
        (image_bytes(Image.new("RGBA", (8, 8), (0, 0, 255, 128)), "PNG"), (127, 127, 255)),
        (image_bytes(Image.new("RGBA", (8, 8), (0, 0, 255, 255)), "PNG"), (0, 0, 255)),
        (image_bytes(Image.new("LA", (8, 8), (100, 255)), "PNG"), (100, 100, 100)),
        (image_bytes(Image.new("1", (8, 8), 1), "PNG"), (255, 255, 255)),
        (image_bytes(Image.new("RGBA", (8, 8), (0, 0, 0, 0)), "WEBP", lossless=True), (255, 255, 255)),
    ],
    ids=[
        "cmyk-jpeg",
        "png16-mid",
        "png16-max",
        "png16-dark",
        "palette-transparent",
        "gif-transparent",
        "palette-opaque",
        "rgb-trns",
        "l-trns",
        "rgba-half",
        "rgba-opaque",
        "la",
        "bilevel",
        "webp-clear",
    ],
)
def test_every_mode_becomes_the_right_rgb(data, expected):
    pixel = tuple(int(v) for v in decode(data).display[0, 0])
    assert all(abs(a - b) <= 2 for a, b in zip(pixel, expected, strict=True)), pixel


def malformed_exif() -> bytes:
    """EXIF with Orientation 6 and a tag whose value does not fit its type (PlanarConfiguration as text)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "cam"  # Make, ASCII ...
    return exif.tobytes().replace(b"\x01\x0f\x00\x02", b"\x01\x1c\x00\x02")  # ... renamed to a SHORT tag


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_a_malformed_exif_tag_does_not_stop_the_orientation(fmt):
    # ImageOps.exif_transpose re-serialised the EXIF and raised struct.error here (a 500)
    decoded = decode(image_bytes(Image.new("RGB", (60, 20), (200, 30, 30)), fmt, exif=malformed_exif()))
    assert decoded.size == (20, 60)


def test_a_tiff_whose_strip_offsets_have_the_wrong_type_is_invalid():
    data = image_bytes(Image.new("RGB", (20, 24)), "TIFF")
    entry = data.find(b"\x11\x01\x04\x00")  # StripOffsets, LONG
    assert entry > 0
    with pytest.raises(InvalidImage):  # it raised TypeError in Pillow's loader (a 500)
        decode(data[:entry] + b"\x11\x01\x02\x00" + data[entry + 4 :])  # ... as ASCII


@pytest.mark.filterwarnings("ignore")
def test_seeded_byte_mutations_of_every_allowed_format_fail_only_with_domain_errors():
    """Flip a few bytes (and sometimes truncate) of a small valid file of each format, thousands of times."""
    base = Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 20, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "cam"
    seeds = {
        "JPEG": image_bytes(base, "JPEG", exif=exif.tobytes()),
        "PNG": image_bytes(base, "PNG", exif=exif.tobytes()),
        "APNG": image_bytes(base, "PNG", save_all=True, append_images=[base.rotate(90)]),
        "GIF": image_bytes(base, "GIF", save_all=True, append_images=[base.rotate(90)]),
        "TIFF": image_bytes(base, "TIFF", exif=exif.tobytes()),
        "WEBP": image_bytes(base, "WEBP", exif=exif.tobytes()),
        "BMP": image_bytes(base, "BMP"),
    }
    rng = random.Random(1)
    outcomes: dict[str, int] = {}
    for data in seeds.values():
        for _ in range(1500):
            mutated = bytearray(data)
            for _ in range(rng.choice((1, 2, 4, 8, 16))):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            if rng.random() < 0.2:
                del mutated[rng.randrange(len(mutated)) :]
            try:
                decode(bytes(mutated), max_pixels=4_000_000)
                outcome = "decoded"
            except ServiceError as exc:
                outcome = exc.code
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    print(outcomes)
    assert set(outcomes) <= {"decoded", "invalid_image", "unsupported_image", "image_too_large"}


def phone_jpeg(cat_photo: Image.Image, size: tuple[int, int], orientation: int | None = None) -> bytes:
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    return image_bytes(cat_photo.resize(size), "JPEG", quality=90, exif=exif.tobytes())


@pytest.mark.parametrize(
    ("size", "orientation", "loaded"),
    [
        ((4032, 3024), None, (1008, 756)),  # 1/4: still >= the 512 x 384 picture and the 224 x 224 input
        ((3024, 4032), 6, (756, 1008)),  # stored upright-rotated: the needed size is turned with it
        ((1920, 1080), None, (960, 540)),  # 1/2 covers 512 x 288
        ((640, 480), None, (640, 480)),  # no reduction covers 512 x 384 without going below it
        ((4000, 240), None, (4000, 240)),  # the model's 224 px input height allows no reduction
    ],
)
def test_large_jpegs_are_decoded_at_the_smallest_scale_that_still_covers_model_and_picture(
    size, orientation, loaded, cat_photo
):
    from model_store import Preprocessing
    from service.imaging.decoding import needed_size, open_image

    data = phone_jpeg(cat_photo, size, orientation)
    image, upright_size = open_image(data, 10**8, lambda upright: needed_size(upright, (224, 224), 512))
    stored = image.size if orientation is None else image.size[::-1]
    assert stored == loaded
    assert upright_size == (size[::-1] if orientation == 6 else size)
    decoded = decode_image(data, Preprocessing((224, 224), (0.5,) * 3, (0.5,) * 3), 10**8, 512)
    assert decoded.size == upright_size and max(decoded.display.shape[:2]) == 512


def test_a_draft_decoded_jpeg_gives_nearly_the_input_of_a_full_decode(cat_photo):
    from model_store import Preprocessing

    preprocessing = Preprocessing((224, 224), (0.5,) * 3, (0.5,) * 3, "bicubic")
    data = phone_jpeg(cat_photo, (4032, 3024))
    full = preprocessing.to_tensor(Image.open(io.BytesIO(data)).convert("RGB"))
    drafted = decode_image(data, preprocessing, 10**8, 512).tensor
    assert (drafted - full).abs().mean() < 0.02  # inputs in [-1, 1]: a fraction of one grey level on average


def test_the_model_input_is_computed_without_torch_operations_with_the_bits_of_the_torch_formula(cat_photo):
    """Normalising in numpy (so that decoding runs no torch operation off the worker thread) gives exactly the
    float32 bits of (x / 255 - mean) / std computed in torch."""
    from model_store import Preprocessing

    for preprocessing in (
        Preprocessing((224, 224), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic"),
        Preprocessing((224, 224), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ):
        resized = cat_photo.resize((224, 224), Image.Resampling[preprocessing.interpolation.upper()])
        pixels = torch.from_numpy(np.asarray(resized, dtype=np.float32)).permute(2, 0, 1) / 255.0
        mean, std = (
            torch.tensor(v, dtype=torch.float32).view(3, 1, 1) for v in (preprocessing.mean, preprocessing.std)
        )
        assert torch.equal(preprocessing.to_tensor(cat_photo), (pixels - mean) / std)


@pytest.mark.parametrize(
    "mode, marked, unmarked",
    [
        ("L", 255, 0),
        ("RGB", (0, 0, 7), (0, 0, 0)),
        ("P", 3, 0),
        ("I;16", 65535, 0),
        ("RGBA", (9, 0, 0, 0), (0, 0, 0, 255)),
    ],
)
def test_a_mask_is_its_pixels_that_are_not_black_at_the_input_size(mode, marked, unmarked):
    mask = Image.new(mode, (64, 32), unmarked)
    if mode == "P":
        mask.putpalette([0, 0, 0] * 256)  # a class mask: the index counts, not its colour
    mask.paste(marked, (0, 0, 32, 32))  # the left half
    region = decode_mask(image_bytes(mask, "PNG"), (64, 32), (4, 8), 10**7)
    assert region.dtype == np.float32 and region.shape == (4, 8)
    np.testing.assert_array_equal(region, np.repeat([[1, 1, 1, 1, 0, 0, 0, 0]], 4, axis=0))


def test_a_mask_must_be_the_image_s_size_and_mark_a_pixel():
    with pytest.raises(InvalidParameter, match="the mask is 64x31 pixels; it must be the image's size, 64x32"):
        decode_mask(image_bytes(Image.new("L", (64, 31), 255), "PNG"), (64, 32), (4, 8), 10**7)
    single = Image.new("L", (64, 32))
    single.putpixel((1, 1), 255)  # a pixel that nearest-neighbour resizing to 8 x 4 does not sample
    with pytest.raises(InvalidParameter, match="no pixel at the model's input size"):
        decode_mask(image_bytes(single, "PNG"), (64, 32), (4, 8), 10**7)

"""CIFAR-10-C's 15 corruptions at severities 1-5, made on the fly from uint8 test images.

The definitions and every parameter are those of Hendrycks & Dietterich, "Benchmarking Neural
Network Robustness to Common Corruptions and Perturbations" (ICLR 2019), as published for
32x32 images in hendrycks/robustness, `ImageNet-C/create_c/make_cifar_c.py` (not the
ImageNet-sized parameters of the `imagecorruptions` package). Written here with numpy, scipy
and Pillow in place of the original's scikit-image, OpenCV and ImageMagick calls:

- motion blur (motion_blur, snow) is ImageMagick's kernel: 2*ceil(radius)+1 taps along the
  angle, Gaussian weights of the given sigma, edge pixels repeated;
- frost blends crops of the published frost photographs, which the `imagecorruptions`
  package ships (the `[analysis]` extra), resized by 0.2 with bilinear sampling;
- the randomness is numpy's generator seeded by (seed, corruption, severity, image index),
  so an image's corruption repeats whatever else is made, but differs from the published
  .npy files' draws. For the published images themselves, give eval their folder
  (`cifar10c_dir`).
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from cifar_exp.errors import UserError

Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]
SIZE = 32  # the published parameters are for 32x32 images
FROST_PACKAGE = "imagecorruptions"


def gaussian_noise(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    scale = (0.04, 0.06, 0.08, 0.09, 0.10)[s - 1]
    return x + rng.normal(size=x.shape, scale=scale)


def shot_noise(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    photons = (500, 250, 100, 75, 50)[s - 1]
    return rng.poisson(x * photons) / photons


def impulse_noise(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    """Salt and pepper: each value, with probability `amount`, becomes 0 or 1 (half each)."""
    amount = (0.01, 0.02, 0.03, 0.05, 0.07)[s - 1]
    flipped = rng.random(x.shape) <= amount
    salt = rng.random(x.shape) <= 0.5
    return np.where(flipped, salt.astype(x.dtype), x)


def blur(x: np.ndarray, sigma: float, mode: str = "nearest") -> np.ndarray:
    """A Gaussian blur over height and width (not across channels), truncated at 4 sigma."""
    return ndimage.gaussian_filter(x, sigma=(sigma, sigma, 0), mode=mode, truncate=4.0)


def defocus_blur(x: np.ndarray, s: int, rng: np.random.Generator | None) -> np.ndarray:
    """Batched ([N, H, W, 3]): no randomness."""
    radius, alias_blur = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))[s - 1]
    kernel = disk(radius, alias_blur)[None, :, :, None]
    return ndimage.correlate(x, kernel, mode="mirror")


def disk(radius: float, alias_blur: float) -> np.ndarray:
    """A 17x17 disk of the radius, normalized, softened by a 3-tap Gaussian (anti-aliasing)."""
    grid = np.arange(-8, 9)
    xs, ys = np.meshgrid(grid, grid)
    kernel = (xs**2 + ys**2 <= radius**2).astype(np.float64)
    kernel /= kernel.sum()
    taps = np.exp(-(np.array([-1.0, 0.0, 1.0]) ** 2) / (2 * alias_blur**2))
    taps /= taps.sum()
    for axis in (0, 1):
        kernel = ndimage.correlate1d(kernel, taps, axis=axis, mode="mirror")
    return kernel


def glass_blur(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    """Blur; pixel by pixel from the bottom right, take a random neighbour's value; blur
    again. (The published code meant to swap the two, but its numpy views make it a copy:
    the neighbour keeps its value. Copying is what made CIFAR-10-C, so it is done here.)"""
    sigma, delta, iterations = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2))[
        s - 1
    ]
    h, w = x.shape[:2]
    x = np.floor(np.clip(blur(x, sigma), 0, 1) * 255) / 255
    rows, cols = range(h - delta, delta, -1), range(w - delta, delta, -1)
    steps = rng.integers(-delta, delta, size=(iterations, len(rows), len(cols), 2)).tolist()
    order = list(range(h * w))  # which original pixel each place now holds
    for step in steps:
        for row, row_steps in zip(rows, step, strict=True):
            for col, (dx, dy) in zip(cols, row_steps, strict=True):
                here, there = row * w + col, (row + dy) * w + col + dx
                order[here] = order[there]
    x = x.reshape(h * w, 3)[order].reshape(h, w, 3)
    return blur(x, sigma)


def motion_kernel_blur(x: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """ImageMagick's motion blur of an [H, W, C] image: a weighted sum of copies shifted along
    `angle` (degrees), Gaussian weights over 2*ceil(radius)+1 taps, edges repeated."""
    width = 2 * int(np.ceil(radius)) + 1
    taps = np.arange(width)
    weights = np.exp(-(taps**2) / (2 * sigma**2))
    weights /= weights.sum()
    h, w = x.shape[:2]
    out = np.zeros_like(x)
    rad = np.deg2rad(angle)
    for i, weight in zip(taps, weights, strict=True):
        dx, dy = int(np.ceil(i * np.cos(rad) - 0.5)), int(np.ceil(i * np.sin(rad) - 0.5))
        rows = np.clip(np.arange(h) + dy, 0, h - 1)
        cols = np.clip(np.arange(w) + dx, 0, w - 1)
        out += weight * x[rows][:, cols]
    return out


def motion_blur(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    radius, sigma = ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))[s - 1]
    return motion_kernel_blur(x, radius, sigma, rng.uniform(-45, 45))


def clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """Zoom into the centre of [..., H, W, C] images by `factor`, cut back to their size:
    scipy.ndimage.zoom's bilinear map (corners aligned), done by torch for whole batches."""
    h = x.shape[-3]
    crop = int(np.ceil(h / factor))
    top = (h - crop) // 2
    part = torch.from_numpy(np.ascontiguousarray(x[..., top : top + crop, top : top + crop, :]))
    flat = part.reshape(-1, crop, crop, part.shape[-1]).permute(0, 3, 1, 2)
    size = round(crop * factor)
    zoomed = torch.nn.functional.interpolate(
        flat, size=(size, size), mode="bilinear", align_corners=True
    )
    zoomed = zoomed.permute(0, 2, 3, 1).reshape(*x.shape[:-3], size, size, x.shape[-1]).numpy()
    trim = (size - h) // 2
    return zoomed[..., trim : trim + h, trim : trim + h, :]


def zoom_blur(x: np.ndarray, s: int, rng: np.random.Generator | None) -> np.ndarray:
    """Batched ([N, H, W, 3]): no randomness."""
    # np.arange as published: its float steps give 7, 12, 17, 22 and 27 factors
    factors = np.arange(1, (1.06, 1.11, 1.16, 1.21, 1.26)[s - 1], 0.01)
    out = sum(clipped_zoom(x, f) for f in factors)
    return (x + out) / (len(factors) + 1)


def grey(x: np.ndarray) -> np.ndarray:
    return x @ np.array([0.299, 0.587, 0.114])


def snow(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    loc, scale, zoom, threshold, radius, sigma, keep = (
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    )[s - 1]
    flakes = rng.normal(size=(*x.shape[:2], 1), loc=loc, scale=scale)
    flakes = clipped_zoom(flakes, zoom)
    flakes[flakes < threshold] = 0
    flakes = np.floor(np.clip(flakes, 0, 1) * 255) / 255  # an 8-bit layer, as published
    flakes = motion_kernel_blur(flakes, radius, sigma, rng.uniform(-135, -45))
    x = keep * x + (1 - keep) * np.maximum(x, grey(x)[..., None] * 1.5 + 0.5)
    return x + flakes + np.rot90(flakes, k=2)


@cache
def frost_pictures() -> tuple[np.ndarray, ...]:
    """The published frost photographs 1-5 (the sixth is never drawn), scaled by 0.2."""
    # Found, not imported: the package's own module needs pkg_resources, gone from current
    # setuptools; only its pictures are used.
    spec = importlib.util.find_spec(FROST_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "the frost corruption blends the published frost photographs, which the "
            f"'{FROST_PACKAGE}' package ships: pip install 'cifar-exp[analysis]', or leave "
            "frost out of corruptions"
        )
    folder = Path(spec.submodule_search_locations[0]) / "frost"
    pictures = []
    for name in ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg"):
        with Image.open(folder / name) as picture:
            rgb = torch.from_numpy(np.asarray(picture.convert("RGB"), dtype=np.float32))
        size = [round(n * 0.2) for n in rgb.shape[:2]]
        small = torch.nn.functional.interpolate(
            rgb.permute(2, 0, 1)[None], size=size, mode="bilinear", align_corners=False
        )
        pictures.append(small[0].permute(1, 2, 0).round().clamp(0, 255).numpy() / 255)
    return tuple(pictures)


def frost(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    keep, amount = ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))[s - 1]
    picture = frost_pictures()[rng.integers(5)]
    h, w = x.shape[:2]
    top, left = rng.integers(0, picture.shape[0] - h), rng.integers(0, picture.shape[1] - w)
    return keep * x + amount * picture[top : top + h, left : left + w]


def plasma_fractal(size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """A size x size height map in [0, 1] by the diamond-square algorithm (size a power of
    two, the map wrapping around), each level's random wobble `decay` times the last's."""
    heights = np.zeros((size, size))
    step, wobble = size, 100.0

    def wobbled(total: np.ndarray) -> np.ndarray:
        return total / 4 + wobble * rng.uniform(-wobble, wobble, total.shape)

    while step >= 2:
        half = step // 2
        corners = heights[0:size:step, 0:size:step]
        square = corners + np.roll(corners, -1, axis=0)
        square += np.roll(square, -1, axis=1)
        heights[half:size:step, half:size:step] = wobbled(square)
        centres = heights[half:size:step, half:size:step]
        corners = heights[0:size:step, 0:size:step]
        left = centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1)
        heights[0:size:step, half:size:step] = wobbled(left)
        top = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0)
        heights[half:size:step, 0:size:step] = wobbled(top)
        step //= 2
        wobble /= decay
    heights -= heights.min()
    return heights / heights.max()


def fog(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    amount, decay = ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))[s - 1]
    brightest = x.max()
    x = x + amount * plasma_fractal(SIZE, decay, rng)[..., None]
    return x * brightest / (brightest + amount)


def hsv_shift(x: np.ndarray, channel: int, scale: float, shift: float) -> np.ndarray:
    from matplotlib.colors import hsv_to_rgb, rgb_to_hsv

    hsv = rgb_to_hsv(np.clip(x, 0, 1))
    hsv[..., channel] = np.clip(hsv[..., channel] * scale + shift, 0, 1)
    return hsv_to_rgb(hsv)


def brightness(x: np.ndarray, s: int, rng: np.random.Generator | None) -> np.ndarray:
    """Batched ([N, H, W, 3]): no randomness."""
    return hsv_shift(x, 2, 1.0, (0.05, 0.1, 0.15, 0.2, 0.3)[s - 1])


def contrast(x: np.ndarray, s: int, rng: np.random.Generator | None) -> np.ndarray:
    """Batched ([N, H, W, 3]): no randomness."""
    factor = (0.75, 0.5, 0.4, 0.3, 0.15)[s - 1]
    means = x.mean(axis=(-3, -2), keepdims=True)
    return (x - means) * factor + means


def elastic_transform(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    """A random affine warp of three points, then a smooth random displacement field."""
    alpha, sigma, shift = SIZE * np.array(
        ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03))[
            s - 1
        ]
    )
    h, w = x.shape[:2]
    centre, side = np.array([h // 2, w // 2], dtype=np.float64), min(h, w) // 3
    source = np.array([centre + side, [centre[0] + side, centre[1] - side], centre - side])
    target = source + rng.uniform(-shift, shift, size=source.shape)
    # the affine map source -> target (points as x, y), then each output pixel samples the
    # input where the inverse map sends it: bilinear, borders mirrored
    forward = np.linalg.solve(np.c_[source, np.ones(3)], target).T  # [2, 3]
    inverse = np.linalg.inv(np.r_[forward, [[0, 0, 1]]])
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    src_x = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    src_y = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    x = np.stack(
        [
            ndimage.map_coordinates(x[..., c], [src_y, src_x], order=1, mode="mirror")
            for c in range(3)
        ],
        axis=-1,
    )
    dx, dy = (
        ndimage.gaussian_filter(rng.uniform(-1, 1, size=(h, w)), sigma, mode="reflect", truncate=3)
        * alpha
        for _ in range(2)
    )
    return np.stack(
        [
            ndimage.map_coordinates(x[..., c], [ys + dy, xs + dx], order=1, mode="reflect")
            for c in range(3)
        ],
        axis=-1,
    )


def as_picture(x: np.ndarray) -> Image.Image:
    return Image.fromarray(np.uint8(np.clip(x, 0, 1) * 255))


def pixelate(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    h, w = x.shape[:2]
    scale = (0.95, 0.9, 0.85, 0.75, 0.65)[s - 1]
    small = as_picture(x).resize((int(w * scale), int(h * scale)), Image.Resampling.BOX)
    return np.asarray(small.resize((w, h), Image.Resampling.BOX)) / 255


def jpeg_compression(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    buffer = io.BytesIO()
    as_picture(x).save(buffer, "JPEG", quality=(80, 65, 58, 50, 40)[s - 1])
    with Image.open(buffer) as picture:
        return np.asarray(picture.convert("RGB")) / 255


# These take a whole batch [N, H, W, 3] at once (and no generator): they draw nothing.
BATCHED = {defocus_blur, zoom_blur, brightness, contrast}

# The 15 of CIFAR-10-C's benchmark, in the published order (its 4 held-out extras, speckle
# noise, Gaussian blur, spatter and saturate, are not here).
CORRUPTIONS: dict[str, Corruption] = {
    f.__name__: f
    for f in (
        gaussian_noise,
        shot_noise,
        impulse_noise,
        defocus_blur,
        glass_blur,
        motion_blur,
        zoom_blur,
        snow,
        frost,
        fog,
        brightness,
        contrast,
        elastic_transform,
        pixelate,
        jpeg_compression,
    )
}


def corruption_names(value: Any) -> list[str]:
    """`corruptions=` as a list of names: none -> [], all -> the 15, a name or a list as is."""
    if value is None or value == "none":
        return []
    if value == "all":
        return list(CORRUPTIONS)
    return [value] if isinstance(value, str) else [str(v) for v in value]


def check_images(images: torch.Tensor) -> None:
    if tuple(images.shape[1:]) != (3, SIZE, SIZE):
        raise UserError(
            f"the corruptions are CIFAR-10-C's, defined for 3x{SIZE}x{SIZE} images; this "
            f"test split's images are {'x'.join(map(str, images.shape[1:]))}"
        )


def corrupt(
    images: torch.Tensor, name: str, severity: int, seed: int, index: torch.Tensor
) -> torch.Tensor:
    """Corrupted copies of uint8 [N, 3, 32, 32] `images`; image k's randomness comes from
    (seed, the corruption's number, severity, index[k]) alone."""
    check_images(images)
    function, number = CORRUPTIONS[name], list(CORRUPTIONS).index(name)
    pixels = images.permute(0, 2, 3, 1).numpy() / 255.0
    if function in BATCHED:
        corrupted = function(pixels, severity, None)
    else:
        corrupted = np.stack(
            [
                function(image, severity, np.random.default_rng([seed, number, severity, at]))
                for image, at in zip(pixels, index.tolist(), strict=True)
            ]
        )
    out = np.uint8(np.clip(corrupted, 0, 1) * 255)  # truncated, as published
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()

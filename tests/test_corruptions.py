"""CIFAR-10-C's corruptions: repeatable per image, and equal to the published calls.

The published code (hendrycks/robustness, make_cifar_c.py) calls OpenCV and scikit-image;
ours calls numpy and scipy. Where a corruption draws nothing at random, or with the same
draws, the two are compared here with those libraries (which the [analysis] extra brings in,
through imagecorruptions); motion blur's ImageMagick kernel is checked by its shape."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cifar_exp.datasets import corruptions
from cifar_exp.datasets.corruptions import CORRUPTIONS, corrupt, corruption_names
from cifar_exp.errors import UserError


def smooth_images(n: int, seed: int = 0) -> torch.Tensor:
    """Photograph-like uint8 [n, 3, 32, 32]: a blurred random field plus a gradient."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand(n, 3, 8, 8, generator=gen)
    field = torch.nn.functional.interpolate(noise, size=32, mode="bilinear")
    ramp = torch.linspace(0, 0.3, 32).view(1, 1, 1, 32)
    return ((field * 0.7 + ramp).clamp(0, 1) * 255).to(torch.uint8)


IMAGES = smooth_images(6)
INDEX = torch.arange(6)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_changes_the_image_and_repeats_per_image(name):
    if name == "frost":
        pytest.importorskip("cv2")  # stands for the [analysis] extra, which ships the frost photos
    light = corrupt(IMAGES, name, 1, seed=0, index=INDEX)
    heavy = corrupt(IMAGES, name, 5, seed=0, index=INDEX)
    assert light.dtype == torch.uint8 and light.shape == IMAGES.shape
    assert not torch.equal(heavy, IMAGES) and not torch.equal(light, heavy)
    # image k is a function of (seed, index[k]) alone: alone, or in another batch, the same
    again = corrupt(IMAGES[[4, 1]], name, 5, seed=0, index=INDEX[[4, 1]])
    assert torch.equal(again, heavy[[4, 1]])


@pytest.mark.parametrize(
    "name", ["gaussian_noise", "glass_blur", "snow", "fog", "elastic_transform"]
)
def test_another_seed_draws_other_corruptions(name):
    first = corrupt(IMAGES, name, 3, seed=0, index=INDEX)
    assert not torch.equal(first, corrupt(IMAGES, name, 3, seed=1, index=INDEX))


def test_names_and_one_line_errors():
    assert corruption_names("all") == list(CORRUPTIONS) and len(CORRUPTIONS) == 15
    assert corruption_names("none") == [] and corruption_names(["fog", "snow"]) == ["fog", "snow"]
    with pytest.raises(
        UserError, match="defined for 3x32x32 images; this test split's images are 3x64x64"
    ):
        corrupt(torch.zeros(1, 3, 64, 64, dtype=torch.uint8), "fog", 1, 0, torch.arange(1))


def test_frost_without_its_photographs_names_the_extra(monkeypatch):
    monkeypatch.setattr(corruptions, "FROST_PACKAGE", "no_such_package_here")
    corruptions.frost_pictures.cache_clear()
    try:
        with pytest.raises(UserError, match=r"pip install 'cifar-exp\[analysis\]'"):
            corrupt(IMAGES[:1], "frost", 1, 0, INDEX[:1])
    finally:
        corruptions.frost_pictures.cache_clear()


def pixels(images: torch.Tensor = IMAGES) -> np.ndarray:
    return images.permute(0, 2, 3, 1).numpy() / 255.0


def test_defocus_blur_equals_the_published_opencv_disk():
    cv2 = pytest.importorskip("cv2")
    for severity, (radius, alias_blur) in enumerate(
        [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)], start=1
    ):
        grid = np.arange(-8, 9)
        xs, ys = np.meshgrid(grid, grid)
        disk = np.array(xs**2 + ys**2 <= radius**2, dtype=np.float32)
        kernel = cv2.GaussianBlur(disk / disk.sum(), ksize=(3, 3), sigmaX=alias_blur)
        ours_all = corruptions.defocus_blur(pixels(), severity, None)
        for image, ours in zip(pixels(), ours_all, strict=True):
            published = np.stack([cv2.filter2D(image[..., c], -1, kernel) for c in range(3)], -1)
            assert np.abs(ours - published).max() < 1e-6


def test_blur_brightness_and_zoom_equal_the_published_scikit_image_and_scipy_calls():
    pytest.importorskip("skimage")
    from scipy.ndimage import zoom
    from skimage.color import hsv2rgb, rgb2hsv
    from skimage.filters import gaussian

    image = pixels()[0]
    assert (
        np.abs(corruptions.blur(image, 0.4) - gaussian(image, sigma=0.4, channel_axis=-1)).max()
        < 1e-12
    )
    hsv = rgb2hsv(image)
    hsv[..., 2] = np.clip(hsv[..., 2] + 0.3, 0, 1)
    assert np.abs(corruptions.brightness(image[None], 5, None)[0] - hsv2rgb(hsv)).max() < 1e-9
    for factor in (1.03, 1.25, 1.75, 2.25):
        crop = int(np.ceil(32 / factor))
        top = (32 - crop) // 2
        zoomed = zoom(image[top : top + crop, top : top + crop], (factor, factor, 1), order=1)
        trim = (zoomed.shape[0] - 32) // 2
        published = zoomed[trim : trim + 32, trim : trim + 32]
        assert np.abs(corruptions.clipped_zoom(image, factor) - published).max() < 1e-9


def test_elastic_severity_one_is_the_published_opencv_affine_warp():
    cv2 = pytest.importorskip("cv2")
    image = pixels()[2].astype(np.float32)
    ours = corruptions.elastic_transform(image, 1, np.random.default_rng(7))
    shift = 32 * 0.08
    rng = np.random.default_rng(7)  # the same draws, in the published order
    centre, side = np.float32([32, 32]) // 2, 32 // 3
    source = np.float32([centre + side, [centre[0] + side, centre[1] - side], centre - side])
    target = source + rng.uniform(-shift, shift, size=source.shape).astype(np.float32)
    matrix = cv2.getAffineTransform(source, target)
    published = cv2.warpAffine(image, matrix, (32, 32), borderMode=cv2.BORDER_REFLECT_101)
    # OpenCV interpolates with 5-bit fixed-point weights: 1/32 of a step between pixels
    assert np.abs(ours - published).max() < 0.02


def test_motion_blur_is_imagemagicks_one_sided_gaussian_trail():
    dot = np.zeros((32, 32, 1))
    dot[16, 20] = 1.0
    trail = corruptions.motion_kernel_blur(dot, radius=6, sigma=2, angle=0)[..., 0]
    assert trail.sum() == pytest.approx(1.0)
    row = trail[16]
    assert np.count_nonzero(trail) == np.count_nonzero(row) == 13  # 2 ceil(6) + 1 taps
    assert row[20] == row.max() and np.all(np.diff(row[8:21]) > 0)  # fading to the left

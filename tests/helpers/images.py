"""Image folders made up for a test: random pixels in the ImageFolder layout."""

from pathlib import Path

import torch


def image_folder(root: Path, train_per_class: int, test_per_class: int, classes: int = 10) -> Path:
    """A CIFAR-shaped ImageFolder (root/{train,test}/class<k>/*.png) of random 32x32 PNGs,
    the same pixels every time: the data the airbench benches' dry runs need."""
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for label in range(classes):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True)
            pixels = torch.randint(0, 256, (count, 32, 32, 3), generator=gen, dtype=torch.uint8)
            for i, image in enumerate(pixels.numpy()):
                Image.fromarray(image).save(folder / f"{i:04d}.png")
    return root


COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def make_folder(root: Path, per_class: int = 4, splits=("train", "test")) -> Path:
    """Solid-color images per class, in several formats, sizes and modes."""
    from PIL import Image

    formats = [("png", "RGB", (40, 30)), ("jpg", "RGB", (32, 32)), ("bmp", "L", (17, 50))]
    for split in splits:
        for name, color in COLORS.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                ext, mode, size = formats[i % len(formats)]
                image = Image.new("RGB", size, color).convert(mode)
                image.save(folder / f"{i:03d}.{ext}")
    return root

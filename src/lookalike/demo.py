"""Real photos shipped by installed packages, for the demo library.

scikit-image's bundled sample photos (``skimage/data``; BSD-licensed, see its README.txt)
and the Machine Vision Toolbox data package ``mvtb-data`` (MIT). Grayscale test patterns
and non-photos are skipped.
"""

from __future__ import annotations

from pathlib import Path

from .sources import IMAGE_SUFFIXES

SKIMAGE_PHOTOS = (
    "astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
    "hubble_deep_field.jpg", "retina.jpg", "color.png", "camera.png", "coins.png", "moon.png",
    "brick.png", "grass.png", "gravel.png", "horse.png", "page.png",
)  # fmt: skip


def demo_photos() -> list[tuple[Path, dict[str, object]]]:
    """(path, tags) of the packaged demo photos, sorted, each tagged with ``source``."""
    photos: list[tuple[Path, dict[str, object]]] = []
    try:
        import skimage.data

        root = Path(skimage.data.__file__).parent
        photos += [(root / n, {"source": "skimage"}) for n in SKIMAGE_PHOTOS if (root / n).exists()]
    except ImportError:
        pass
    try:
        import mvtbdata

        root = Path(mvtbdata.__file__).parent / "images"
        for path in sorted(root.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                folder = path.parent.relative_to(root).as_posix()
                photos.append((path, {"source": "mvtb", "folder": folder if folder != "." else "images"}))
    except ImportError:
        pass
    return photos

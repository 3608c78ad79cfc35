"""Draw Switchboard's Teams app icons: ``python -m manifest.icons`` rewrites both PNGs.

The mark is a patch panel: two rows of three jacks, with a patch cord plugged
into one of them, as on an operator's switchboard. It is drawn as a coverage mask at
eight times the final size, centred, and box-filtered down, so edges are
anti-aliased the same way on every run.

- ``color.png`` (192x192): the white mark on a full-bleed, opaque square in the
  accent colour.
- ``outline.png`` (32x32): the same mark, every pixel white, the shape carried
  by the alpha channel alone, as Teams requires of outline icons.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw

ACCENT_COLOR = "#0B6E75"
"""Background of the colour icon; the manifest's ``accentColor`` must match it."""

COLOR_ICON_SIZE = 192
OUTLINE_ICON_SIZE = 32
MANIFEST_DIR = Path(__file__).resolve().parent

_SUPERSAMPLE = 8
_WHITE = (255, 255, 255)

Point = tuple[float, float]


def _hex_to_rgb(color: str) -> tuple[int, int, int]:
    """Turn ``#rrggbb`` into an RGB triple."""
    value = color.removeprefix("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def _bezier(p0: Point, p1: Point, p2: Point, p3: Point, steps: int = 96) -> list[Point]:
    """Sample a cubic Bezier curve into a polyline."""
    points: list[Point] = []
    for i in range(steps + 1):
        t = i / steps
        u = 1 - t
        x = u**3 * p0[0] + 3 * u**2 * t * p1[0] + 3 * u * t**2 * p2[0] + t**3 * p3[0]
        y = u**3 * p0[1] + 3 * u**2 * t * p1[1] + 3 * u * t**2 * p2[1] + t**3 * p3[1]
        points.append((x, y))
    return points


def _disc(draw: ImageDraw.ImageDraw, center: Point, radius: float, fill: int) -> None:
    """Fill a circle on a mask."""
    x, y = center
    draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=fill)


def render_mark(size: int, *, glyph_fraction: float, bold: bool) -> Image.Image:
    """Return the patch-panel mark as an ``L`` coverage mask of ``size`` x ``size``.

    ``glyph_fraction`` is the share of the width the mark spans; ``bold``
    thickens rings and cord for the 32-pixel outline, where thin strokes blur away.
    """
    canvas = size * _SUPERSAMPLE
    mask = Image.new("L", (canvas, canvas), 0)
    draw = ImageDraw.Draw(mask)

    span = canvas * glyph_fraction
    left = (canvas - span) / 2
    pitch = span / 3  # three jack columns, each centred in its third
    ring = pitch * (0.40 if bold else 0.36)
    hole = ring * (0.38 if bold else 0.50)
    cord_width = ring * (0.62 if bold else 0.55)

    def jack(col: int, row: int) -> Point:
        # The panel sits in the upper part of the frame; the cord fills the lower part.
        x = left + pitch * (col + 0.5)
        y = canvas / 2 + pitch * (row - 0.5) * 1.05 - pitch * 0.45
        return x, y

    for row in range(2):
        for col in range(3):
            _disc(draw, jack(col, row), ring, 255)
            _disc(draw, jack(col, row), hole, 0)

    # One patch cord, plugged into the bottom-right jack, drops and sweeps out to the left.
    plug = jack(2, 1)
    cord_end = (left + pitch * 0.2, canvas / 2 + span * 0.47)
    cord = _bezier(
        plug,
        (plug[0], plug[1] + pitch * 1.3),
        (cord_end[0] + pitch * 1.6, cord_end[1]),
        cord_end,
    )
    draw.line(cord, fill=255, width=round(cord_width), joint="curve")
    _disc(draw, cord_end, cord_width / 2, 255)  # round off the free end
    _disc(draw, plug, ring * 0.80, 255)  # a plugged jack shows no hole
    return _centered(mask).resize((size, size), Image.Resampling.BOX)


def _centered(mask: Image.Image) -> Image.Image:
    """Move the drawn shape so its bounding box sits in the middle of the mask."""
    bbox = mask.getbbox()
    if bbox is None:
        return mask
    left, top, right, bottom = bbox
    centered = Image.new("L", mask.size, 0)
    x = (mask.width - (right - left)) // 2
    y = (mask.height - (bottom - top)) // 2
    centered.paste(mask.crop(bbox), (x, y))
    return centered


def render_color_icon() -> Image.Image:
    """Return the 192x192 full-colour icon: white mark on the accent colour, fully opaque."""
    size = COLOR_ICON_SIZE
    icon = Image.new("RGB", (size, size), _hex_to_rgb(ACCENT_COLOR))
    white = Image.new("RGB", (size, size), _WHITE)
    icon.paste(white, (0, 0), render_mark(size, glyph_fraction=0.60, bold=False))
    return icon


def render_outline_icon() -> Image.Image:
    """Return the 32x32 outline icon: white everywhere, the mark only in the alpha channel."""
    size = OUTLINE_ICON_SIZE
    icon = Image.new("RGBA", (size, size), (*_WHITE, 0))
    icon.putalpha(render_mark(size, glyph_fraction=0.86, bold=True))
    return icon


def write_icons(directory: Path = MANIFEST_DIR) -> list[Path]:
    """Render both icons into ``directory`` and return the paths written."""
    color_path = directory / "color.png"
    outline_path = directory / "outline.png"
    render_color_icon().save(color_path, format="PNG", optimize=True)
    render_outline_icon().save(outline_path, format="PNG", optimize=True)
    return [color_path, outline_path]


def main() -> int:
    """Regenerate the committed icons next to this module."""
    for path in write_icons():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

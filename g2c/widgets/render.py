"""Matplotlib (Agg, no pyplot) to PNG bytes, and the small HTML messages every widget shows.

Figures are drawn with ``matplotlib.figure.Figure`` and its Agg canvas, never ``plt.show``:
the picture travels inside a widget (``frames.Picture``), so it works in a live kernel, under
nbgrader's autograder (no display, nothing to wait for) and in a static book page.
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Callable, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from PIL.PngImagePlugin import PngInfo

# A widget picture is ``width`` x ``height`` "design inches" at 80 pixels each (9 in: 720 px), drawn
# on a figure 0.7 times that size at 80/0.7 dpi: the same pixels, with every font 1/0.7 times
# larger, so 9 pt text stays above 80 % of the book's 16 px body text (test_book_browser measures it).
PIXELS_PER_INCH = 80
TEXT_SCALE = 0.7
DPI = PIXELS_PER_INCH / TEXT_SCALE
MIN_FONT_PT = 9  # no widget text smaller
# Frames are drawn with 2 device pixels per CSS pixel and shown at half their pixel width (``png_css_width``):
# sharp on HiDPI screens, and the same size and text size as before on any screen.
PIXEL_RATIO = 2
TRAIN_COLOR = "#0072B2"  # Okabe-Ito blue and orange: apart for colour-blind readers; solid vs dashed in greyscale
VAL_COLOR = "#E69F00"


def new_figure(width: float = 8.0, height: float = 3.2, ncols: int = 1, *, legend_below: float = 0.0) -> tuple[Figure, list]:
    """A figure with ``ncols`` side-by-side axes, attached to an Agg canvas.

    ``legend_below``: the fraction of the height kept under the axes for a legend, so it covers no data.
    """
    fig = Figure(figsize=(width * TEXT_SCALE, height * TEXT_SCALE), dpi=DPI)
    # fixed: layout engines cost ~0.1 s a frame
    fig.subplots_adjust(left=0.12, right=0.96, bottom=0.2 + legend_below, top=0.88, wspace=0.3)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def legend_below(ax, ncol: int = 2, **kw) -> None:
    """A legend under ``ax``, outside the data area (the figure reserves the room: ``new_figure(legend_below=...)``)."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=ncol, frameon=False, fontsize=MIN_FONT_PT,
              columnspacing=1.0, handlelength=1.8, **kw)


def min_font_px(fig: Figure, dpi: float) -> float:
    """The smallest font size of any visible text in ``fig``, in pixels of a PNG saved at ``dpi``."""
    from matplotlib.text import Text

    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    return min(sizes, default=0.0) * dpi / 72


def to_png(fig: Figure, dpi: float = DPI * PIXEL_RATIO) -> bytes:
    """Render ``fig`` to PNG bytes (Agg), at ``PIXEL_RATIO`` device pixels per CSS pixel unless told otherwise;
    the PNG records its smallest font size (tEXt ``min-font-px``).

    The figure keeps ``dpi`` (``savefig`` set it and back on every frame, so a widget's kept figure had its Agg
    renderer, and the text it caches, made anew for each frame). An opaque frame (every widget's: a white face)
    is encoded as RGB, not RGBA: the same pixels in a PNG about 10 % smaller (the book embeds every static frame).
    """
    if not isinstance(fig.canvas, FigureCanvasAgg):  # a Figure made without new_figure
        FigureCanvasAgg(fig)
    if fig.dpi != dpi:
        fig.set_dpi(dpi)
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    pixels = rgba[..., :3] if rgba[..., 3].min() == 255 else rgba
    info = PngInfo()
    info.add_text("min-font-px", f"{min_font_px(fig, dpi):.2f}")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="png", pnginfo=info, dpi=(dpi, dpi))
    return buffer.getvalue()


def png_css_width(png: bytes) -> int | None:
    """The width a frame is shown at, in CSS pixels: its pixel width (from the PNG header) over ``PIXEL_RATIO``."""
    if len(png) < 24 or not png.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    return int.from_bytes(png[16:20], "big") // PIXEL_RATIO


def png_with(fig: Figure, add: Callable[[], object]) -> bytes:
    """Render ``fig`` with the artists ``add()`` puts on its axes, then take them off again.

    A widget whose frames share axes, limits and most artists keeps one figure and lets each
    frame add only what changes: the ticks, labels and fixed artists are laid out once, which
    is most of a frame's cost (lr_sweep: 0.28 s a frame drawn from scratch, 0.13 s reused).
    """
    before = {ax: set(ax.get_children()) for ax in fig.axes}
    try:
        add()
        return to_png(fig)
    finally:
        for ax, kept in before.items():
            for artist in set(ax.get_children()) - kept:
                artist.remove()


def message_html(text: str, *, kind: str = "info") -> str:
    """A one-line box: ``kind`` is "info", "ok", "warn" or "error" (red, for bad input)."""
    colors = {
        "info": ("#eef4fb", "#1f4e79"),
        "ok": ("#eaf7ea", "#1e6b1e"),
        "warn": ("#fff6e0", "#7a5200"),
        "error": ("#fdecea", "#a11d1d"),
    }
    background, color = colors.get(kind, colors["info"])
    return (
        f'<div style="background:{background};color:{color};padding:4px 8px;border-radius:4px;'
        f'font-family:sans-serif;font-size:13px">{text}</div>'
    )


def error_html(exc: BaseException, *, what: str) -> str:
    """A clear red message for bad input: what failed and why, never a traceback."""
    if isinstance(exc, NotImplementedError) and not str(exc):  # a student's answer cell not written yet
        return message_html(f"<b>{html.escape(what)}:</b> NotImplementedError: your code is not written yet "
                            "(it still raises NotImplementedError); run this cell again once it is", kind="error")
    reason = html.escape(str(exc) or type(exc).__name__)
    prefix = "" if isinstance(exc, ValueError) else f"{type(exc).__name__}: "
    return message_html(f"<b>{html.escape(what)}:</b> {prefix}{reason}", kind="error")


def fmt(x: float) -> str:
    """Compact number for labels: 0.001, 0.03, 3, 1e-05."""
    return f"{x:g}"


def curve_words(name: str, steps: Sequence[float], values: Sequence[float], *, unit: str = "step") -> str:
    """A curve in the numbers a reader takes from it: start, lowest point (if inside), end.

    Alt text is built from these ("validation loss 2.5 at step 0, lowest 1.8 at step 120, 2.3
    at step 300"), so a reader who cannot see the picture can still tell a dip from a rise.
    Non-finite points are left out (the caller says where a run turned NaN).
    """
    points = [(s, float(v)) for s, v in zip(steps, values) if math.isfinite(v)]
    if not points:
        return f"{name}: no finite value"
    first, last = points[0], points[-1]
    low = min(points, key=lambda point: point[1])
    words = [f"{name} {first[1]:.3g} at {unit} {first[0]:g}"]
    if low not in (first, last):
        words.append(f"lowest {low[1]:.3g} at {unit} {low[0]:g}")
    if last is not first:
        words.append(f"{last[1]:.3g} at {unit} {last[0]:g}")
    return ", ".join(words)

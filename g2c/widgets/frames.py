"""The widget container every factory returns, the picture with alt text every widget shows,
one frame of a widget, and static mode: frames switched in the browser with no kernel."""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets
import traitlets

from g2c.widgets.render import error_html, png_css_width

SLIDER_LAYOUT = {"width": "560px"}
SLIDER_STYLE = {"description_width": "initial"}


@dataclass(frozen=True)
class Frame:
    """What a widget shows for one setting: a PNG, its alt text, and the caption under it.

    ``caption`` is HTML, or (static mode) a widget such as an ``Accordion`` hiding an answer.
    """

    png: bytes
    alt: str
    caption: str | widgets.Widget = ""


class Panel(widgets.VBox):
    """A ``VBox`` that also keeps handles on its parts, for notebooks and tests.

    ``controls``: name -> control widget; ``image``: the ``Picture`` that shows the current plot
    (live mode); ``readout``: the ``HTML`` with numbers, verdicts and error messages;
    ``stack`` and ``links``: the ``Stack`` of precomputed frames and its ``jslink`` (static mode).
    It serialises as a plain ``VBox``, so embedding needs nothing extra.
    """

    def __init__(
        self,
        children: Sequence[widgets.Widget],
        *,
        controls: dict[str, widgets.Widget] | None = None,
        image: Picture | None = None,
        readout: widgets.HTML | None = None,
        stack: widgets.Stack | None = None,
        links: Sequence[Any] = (),
        **kwargs: Any,
    ):
        super().__init__(children=list(children), **kwargs)
        self.controls = dict(controls or {})
        self.image = image
        self.readout = readout
        self.stack = stack
        self.links = list(links)

    def show(self, frame: Frame) -> None:
        """Show ``frame``'s picture and caption (live mode)."""
        self.image.show(frame.png, frame.alt)
        self.readout.value = frame.caption

    def show_error(self, exc: BaseException, *, what: str) -> None:
        """Say what went wrong, with no picture: a stale one would show settings that failed."""
        if self.image is not None:
            self.image.show(b"", "")
        self.readout.value = error_html(exc, what=what)


class Picture(widgets.HTML):
    """A PNG with alt text: an ``<img alt=...>`` inside an ``HTML`` widget.

    ipywidgets' ``Image`` cannot carry alt text (its view sets only ``src``, ``width`` and
    ``height``), so a screen reader met every frame as an unnamed image. An ``<img>`` in an
    ``HTML`` widget has its alt text in the widget's own value: read out live in Jupyter and in
    the static book, and replaced with the picture whenever a frame changes. ``png`` holds the
    bytes shown (for tests and notebooks); set both at once with ``show(png, alt)``. With no PNG
    the widget is hidden (``display: none``): no empty box and no broken-image icon.
    """

    png = traitlets.Bytes(b"")
    alt = traitlets.Unicode("")

    def show(self, png: bytes, alt: str) -> None:
        """Show ``png`` described by ``alt`` (one widget update, so picture and text never disagree)."""
        if png and not alt.strip():
            raise ValueError("every picture needs alt text that says what it shows")
        self.png, self.alt = bytes(png), alt
        self.value = picture_html(self.png, alt) if png else ""
        self.layout.display = None if png else "none"


def picture_html(png: bytes, alt: str) -> str:
    """The ``<img>`` of a PNG as a data URI (no file to serve), shown at its CSS width (a 2x frame at half its
    pixels) and scaled down to fit its cell."""
    data = base64.b64encode(png).decode("ascii")
    width = png_css_width(png)
    size = f'width="{width}" ' if width else ""
    return (
        f'<img class="g2c-frame" {size}style="max-width:100%;height:auto" '
        f'alt="{html.escape(alt, quote=True)}" src="data:image/png;base64,{data}">'
    )


def png_image(value: bytes = b"", alt: str = "") -> Picture:
    picture = Picture()
    picture.show(value, alt)
    return picture


def frame_switcher(
    frames: Sequence[bytes],
    labels: Sequence[str],
    description: str,
    *,
    alts: Sequence[str],
    captions: Sequence[str | widgets.Widget] | None = None,
    index: int = 0,
) -> Panel:
    """A slider over ``labels`` that shows ``frames[i]`` with no Python running.

    The frames (PNG bytes, each described by ``alts[i]``) sit in an ``ipywidgets.Stack`` of
    ``Picture`` widgets; the ``SelectionSlider``'s ``index`` is ``jslink``-ed to the Stack's
    ``selected_index``, so the browser switches pictures itself from embedded widget state
    (static book pages). ``captions[i]`` (an HTML string or a widget, e.g. an ``Accordion``
    hiding an answer) is shown under frame ``i``. ``description`` names what the slider changes:
    the book's ``widgets-a11y.js`` makes it, with the value, the slider's accessible name.
    """
    if len(frames) == 0 or len(frames) != len(labels):
        raise ValueError(f"need one label per frame, got {len(frames)} frames and {len(labels)} labels")
    if len(alts) != len(frames):
        raise ValueError(f"need one alt text per frame, got {len(alts)} for {len(frames)} frames")
    if captions is not None and len(captions) != len(frames):
        raise ValueError(f"need one caption per frame, got {len(captions)} for {len(frames)} frames")
    if len(set(labels)) != len(labels):
        raise ValueError(f"frame labels must be distinct, got {list(labels)!r}")
    if not 0 <= index < len(frames):
        raise ValueError(f"index must be in [0, {len(frames)}), got {index!r}")
    pages: list[widgets.Widget] = []
    for i, frame in enumerate(frames):
        picture = png_image(frame, alts[i])
        if captions is None:
            pages.append(picture)
        else:
            below = captions[i] if isinstance(captions[i], widgets.Widget) else widgets.HTML(captions[i])
            pages.append(widgets.VBox([picture, below]))
    slider = widgets.SelectionSlider(
        options=list(labels), index=index, description=description, continuous_update=True,
        layout=SLIDER_LAYOUT, style=SLIDER_STYLE,
    )
    stack = widgets.Stack(children=pages, selected_index=index)
    link = widgets.jslink((slider, "index"), (stack, "selected_index"))
    return Panel([slider, stack], controls={description: slider}, stack=stack, links=[link])


def static_panel(description: str, labels: Sequence[str], frames: Sequence[Frame], *, index: int = 0) -> Panel:
    """Static mode: a slider named ``description`` over ``labels`` switching ``frames`` in the browser."""
    return frame_switcher(
        [f.png for f in frames], labels, description,
        alts=[f.alt for f in frames], captions=[f.caption for f in frames], index=index,
    )


def guarded(what: str) -> Callable[[Callable[..., widgets.Widget]], Callable[..., widgets.Widget]]:
    """Decorate a widget factory: bad arguments give a widget with a red message, not a traceback.

    A notebook cell (or an autograded one) should never die on a typo in a keyword argument;
    the message says which argument and why.
    """

    def decorate(factory: Callable[..., widgets.Widget]) -> Callable[..., widgets.Widget]:
        def build(*args: Any, **kwargs: Any) -> widgets.Widget:
            try:
                return factory(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - shown to the user instead of raised
                readout = widgets.HTML(error_html(exc, what=f"{what} could not start"))
                return Panel([readout], readout=readout)

        build.__name__ = factory.__name__
        build.__qualname__ = factory.__qualname__
        build.__doc__ = factory.__doc__
        build.__wrapped__ = factory  # type: ignore[attr-defined]
        return build

    return decorate

"""The widget container every factory returns, and the browser-only frame switcher of static mode."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as widgets

from g2c.widgets.render import error_html

SLIDER_LAYOUT = {"width": "560px"}
SLIDER_STYLE = {"description_width": "initial"}


class Panel(widgets.VBox):
    """A ``VBox`` that also keeps handles on its parts, for notebooks and tests.

    ``controls``: name -> control widget; ``image``: the ``Image`` that shows the current plot
    (live mode); ``readout``: the ``HTML`` with numbers, verdicts and error messages;
    ``stack`` and ``links``: the ``Stack`` of precomputed frames and its ``jslink`` (static mode).
    It serialises as a plain ``VBox``, so embedding needs nothing extra.
    """

    def __init__(
        self,
        children: Sequence[widgets.Widget],
        *,
        controls: dict[str, widgets.Widget] | None = None,
        image: widgets.Image | None = None,
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


def png_image(value: bytes = b"") -> widgets.Image:
    return widgets.Image(value=value, format="png")


def frame_switcher(
    frames: Sequence[bytes],
    labels: Sequence[str],
    description: str,
    *,
    captions: Sequence[str | widgets.Widget] | None = None,
    index: int = 0,
) -> Panel:
    """A slider over ``labels`` that shows ``frames[i]`` with no Python running.

    The frames (PNG bytes) sit in an ``ipywidgets.Stack`` of ``Image`` widgets; the
    ``SelectionSlider``'s ``index`` is ``jslink``-ed to the Stack's ``selected_index``, so the
    browser switches pictures itself from embedded widget state (static book pages).
    ``captions[i]`` (an HTML string or a widget, e.g. an ``Accordion`` hiding an answer) is
    shown under frame ``i``.
    """
    if len(frames) == 0 or len(frames) != len(labels):
        raise ValueError(f"need one label per frame, got {len(frames)} frames and {len(labels)} labels")
    if captions is not None and len(captions) != len(frames):
        raise ValueError(f"need one caption per frame, got {len(captions)} for {len(frames)} frames")
    if len(set(labels)) != len(labels):
        raise ValueError(f"frame labels must be distinct, got {list(labels)!r}")
    if not 0 <= index < len(frames):
        raise ValueError(f"index must be in [0, {len(frames)}), got {index!r}")
    pages: list[widgets.Widget] = []
    for i, frame in enumerate(frames):
        picture = png_image(frame)
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

"""``schedule_explorer``: linear warmup, cosine decay, then the ``min_lr`` floor, with phases labelled."""

from __future__ import annotations

import math
from collections.abc import Callable

import ipywidgets as widgets

from g2c.training import cosine_with_warmup
from g2c.widgets.frames import SLIDER_STYLE, Frame, Panel, guarded, static_panel
from g2c.widgets.live import grid_with, live, nearest
from g2c.widgets.render import fmt, legend_below, message_html, new_figure, to_png

WARMUPS = (0, 25, 50, 100, 200, 400, 800)
Schedule = Callable[..., float]  # called as schedule(step, *, warmup_steps, max_steps, max_lr, min_lr)


def curve(
    warmup_steps: int, max_steps: int, max_lr: float, min_lr: float, schedule: Schedule = cosine_with_warmup
) -> tuple[list[int], list[float]]:
    """(steps, lrs) of ``schedule`` from step 0 to 20% past ``max_steps`` (it raises on bad settings)."""
    end = max(int(1.2 * max_steps), max_steps + 10)
    steps = list(range(end + 1))
    return steps, [
        float(schedule(s, warmup_steps=warmup_steps, max_steps=max_steps, max_lr=max_lr, min_lr=min_lr)) for s in steps
    ]


PHASES = (("#fde9c9", "warmup"), ("#dbe9f6", "cosine decay"), ("#e6e6e6", "floor"))


class ScheduleFigure:
    """The curve of a schedule over its three shaded, named phases, on one figure kept for every frame.

    The axes, labels and legend are laid out once; ``png(...)`` moves the phases, the curve, the limits and
    the words to the frame's settings and renders: a slider move changes artists' data, it builds no figure.
    """

    def __init__(self) -> None:
        self.fig, (ax,) = new_figure(8.0, 4.2, legend_below=0.15)
        self.fig.subplots_adjust(left=0.14)  # room for the ylabel beside 0.003-style ticks
        self.ax = ax
        self.spans = [ax.axvspan(0, 1, color=color, label=name) for color, name in PHASES]
        # each phase named inside it too, so the shading's colour is not the only cue
        self.names = [ax.text(0, 0, name, ha="center", fontsize=9, color="#333333") for _, name in PHASES]
        (self.line,) = ax.plot([], [], color="black", lw=2)
        self.peak = ax.axhline(1, color="#d62728", ls=":", lw=1)
        ax.set_xlabel("step")
        ax.set_ylabel("learning rate")
        legend_below(ax, ncol=3)
        self.legend_texts = ax.get_legend().get_texts()

    def png(
        self, warmup_steps: int, max_steps: int, max_lr: float, min_lr: float, schedule: Schedule = cosine_with_warmup
    ) -> bytes:
        steps, lrs = curve(warmup_steps, max_steps, max_lr, min_lr, schedule)
        end = steps[-1]
        labels = (f"warmup: {warmup_steps} steps", f"cosine decay to step {max_steps}", "floor: min_lr")
        bounds = ((0, warmup_steps), (warmup_steps, max_steps), (max_steps, end))
        for span, name, text, label, (start, stop) in zip(self.spans, self.names, self.legend_texts, labels, bounds):
            span.set_x(start)
            span.set_width(stop - start)
            name.set_position(((start + stop) / 2, 0.04 * max_lr))
            name.set_visible(stop > start)
            text.set_text(label)
        self.line.set_data(steps, lrs)
        self.peak.set_ydata([max_lr, max_lr])
        self.ax.set_xlim(0, end)
        self.ax.set_ylim(0, 1.1 * max_lr)
        self.ax.set_title(
            f"warmup_steps={warmup_steps}, max_steps={max_steps}, max_lr={fmt(max_lr)}, min_lr={fmt(min_lr)}", fontsize=10
        )
        return to_png(self.fig)


def alt_text(warmup_steps: int, max_steps: int, max_lr: float, min_lr: float, schedule: Schedule = cosine_with_warmup) -> str:
    """What a schedule frame shows: the phases set, and the lr the drawn schedule really gives."""
    steps, lrs = curve(warmup_steps, max_steps, max_lr, min_lr, schedule)
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    mid = (warmup_steps + max_steps) // 2
    return (
        f"Learning rate against step for warmup_steps {warmup_steps}, max_steps {max_steps}, max_lr {fmt(max_lr)}, "
        f"min_lr {fmt(min_lr)}, phases shaded and named "
        f"(warmup to step {warmup_steps}, cosine decay to step {max_steps}, floor after): "
        f"lr {lrs[0]:.3g} at step 0, highest {lrs[peak]:.3g} at step {peak}, {lrs[mid]:.3g} at step {mid}, "
        f"{lrs[max_steps]:.3g} at step {max_steps}, {lrs[-1]:.3g} at step {steps[-1]}."
    )


def describe(warmup_steps: int, max_steps: int, max_lr: float, min_lr: float, schedule: Schedule = cosine_with_warmup) -> str:
    mid = (warmup_steps + max_steps) // 2
    lr_mid = float(schedule(mid, warmup_steps=warmup_steps, max_steps=max_steps, max_lr=max_lr, min_lr=min_lr))
    return message_html(
        f"Warmup protects the first {warmup_steps} steps, when weights are random; then cosine decay "
        f"(step {mid}: lr {lr_mid:.3g}, halfway between max_lr and min_lr) lets early steps move fast and late steps settle; "
        f"from step {max_steps} on the lr stays at min_lr {fmt(min_lr)}."
    )


def frames(schedule: Schedule = cosine_with_warmup) -> Callable[..., Frame]:
    """``frame(warmup_steps, max_steps, max_lr, min_lr)``: picture, alt text and caption, all drawn on one figure."""
    figure = ScheduleFigure()

    def frame(warmup_steps: int, max_steps: int, max_lr: float, min_lr: float) -> Frame:
        settings = (warmup_steps, max_steps, max_lr, min_lr, schedule)
        return Frame(figure.png(*settings), alt_text(*settings), describe(*settings))

    return frame


def keep_settings_valid(controls: dict[str, widgets.Widget]) -> None:
    """The sliders cannot reach settings the schedule refuses: warmup_steps ends at max_steps and min_lr at
    max_lr, and each bound follows its slider, so a drag pulls the other setting along instead of blanking
    the picture (called directly, bad settings still get the schedule's own message)."""
    warmup, max_steps, max_lr, min_lr = (controls[k] for k in ("warmup_steps", "max_steps", "max_lr", "min_lr"))

    def follow_max_steps(_=None) -> None:
        warmup.max = max_steps.value  # ipywidgets clamps the value into the new range

    def follow_max_lr(_=None) -> None:
        min_lr.max = max_lr.max if max_lr.value <= 0 else math.log10(max_lr.value)

    follow_max_steps()
    follow_max_lr()
    max_steps.observe(follow_max_steps, names="value")
    max_lr.observe(follow_max_lr, names="value")


@guarded("schedule_explorer")
def schedule_explorer(
    warmup_steps: int = 100,
    max_steps: int = 1000,
    max_lr: float = 3e-3,
    min_lr: float = 3e-4,
    *,
    schedule: Schedule = cosine_with_warmup,
    static: bool = False,
) -> Panel:
    """Warmup + cosine schedule with four controls; bad settings show a red message in place of the plot.

    ``schedule``: the function drawn (e.g. your own ``cosine_with_warmup``), called like g2c's.
    ``static=True``: the ``warmup_steps`` slider only (0 ... 800), the other settings fixed.
    """
    if static:
        warmups = grid_with([w for w in WARMUPS if w <= max_steps], int(warmup_steps))
        frame = frames(schedule)
        shown = [frame(int(w), max_steps, max_lr, min_lr) for w in warmups]
        return static_panel("warmup steps", [f"{w:g}" for w in warmups], shown, index=nearest(warmups, warmup_steps))

    controls = {
        "warmup_steps": widgets.IntSlider(
            value=warmup_steps, min=0, max=max(2000, int(warmup_steps)), step=10, description="warmup_steps",
            continuous_update=False, style=SLIDER_STYLE,
        ),
        "max_steps": widgets.IntSlider(
            value=max_steps, min=10, max=max(3000, int(max_steps)), step=10, description="max_steps",
            continuous_update=False, style=SLIDER_STYLE,
        ),
        "max_lr": widgets.FloatLogSlider(
            value=max_lr, base=10, min=-5, max=0, step=0.25, description="max_lr", readout_format=".1e",
            continuous_update=False, style=SLIDER_STYLE,
        ),
        "min_lr": widgets.FloatLogSlider(
            value=min_lr, base=10, min=-6, max=0, step=0.25, description="min_lr", readout_format=".1e",
            continuous_update=False, style=SLIDER_STYLE,
        ),
    }
    schedule(0, warmup_steps=warmup_steps, max_steps=max_steps, max_lr=max_lr, min_lr=min_lr)  # bad settings: its message
    keep_settings_valid(controls)
    rows = [("warmup_steps", "max_steps"), ("max_lr", "min_lr")]
    frame = frames(schedule)
    return live(controls, lambda values: frame(**values), what="cosine_with_warmup", rows=rows)

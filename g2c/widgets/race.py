"""``optimizer_race``: SGD, SGD with momentum and AdamW on the same model, data, seed and step budget."""

from __future__ import annotations

import functools
import html
from collections.abc import Mapping

import ipywidgets as widgets

from g2c.data import Dataset
from g2c.training import SGD, AdamW, History
from g2c.widgets.diagnosis import diagnose
from g2c.widgets.frames import SLIDER_STYLE, Panel, frame_switcher, guarded, png_image
from g2c.widgets.render import MIN_FONT_PT, curve_words, error_html, fmt, message_html, new_figure, png_with
from g2c.widgets.runs import LR_GRID, ModelArg, OptimizerFactory, Runs, check_lr, finite_curve

WD_GRID = (0.0, 1e-3, 1e-2, 1e-1)
COLORS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00")  # Okabe-Ito: colour-blind safe
STYLES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1)), (0, (1, 1)))  # and apart in greyscale
MARKERS = ("o", "s", "^", "D", "v", "P")  # one shape per optimizer: colour is never the only cue


def default_optimizers() -> dict[str, OptimizerFactory]:
    return {"SGD": SGD, "SGD momentum 0.9": functools.partial(SGD, momentum=0.9), "AdamW": AdamW}


DEFAULT_LR = {"SGD": 0.1, "SGD momentum 0.9": 0.01, "AdamW": 0.01}


def _nearest(grid: tuple[float, ...], value: float) -> int:
    return min(range(len(grid)), key=lambda i: abs(grid[i] - value) / max(grid[i], value))


class RaceFigure:
    """Train (left) and validation (right) loss of every optimizer on shared, fixed axes.

    The axes are laid out once; ``png(results)`` adds one frame's curves and renders.
    """

    def __init__(self, steps: int):
        self.fig, (self.left, self.right) = new_figure(9.0, 4.6, ncols=2, legend_below=0.17)
        for ax, title in ((self.left, "train loss"), (self.right, "validation loss")):
            ax.set_xlim(0, steps)  # fixed, so frames compare at a glance
            ax.set_xlabel("step")
            ax.set_title(title)

    def png(self, results: dict[str, tuple[float, float, History]]) -> bytes:
        return png_with(self.fig, lambda: self._add_curves(results))

    def _add_curves(self, results: dict[str, tuple[float, float, History]]) -> None:
        top = max(h.eval_train_loss[0] for _, _, h in results.values())  # the start, or a higher end that is no NaN
        for (name, (lr, wd, h)), color, style, marker in zip(results.items(), COLORS, STYLES, MARKERS):
            steps, train_loss, val_loss = finite_curve(h)
            label = f"{name} (lr {fmt(lr)}, wd {fmt(wd)}): {diagnose(h).tag}"
            self.left.plot(steps, train_loss, color=color, lw=2, ls=style, marker=marker, ms=5, markevery=4, label=label)
            self.right.plot(steps, val_loss, color=color, lw=2, ls=style, marker=marker, ms=5, markevery=4)
            if not h.diverged:
                top = max([top, *train_loss[-1:], *val_loss[-1:]])
        for ax in (self.left, self.right):
            ax.set_ylim(0, 1.3 * top)
        self.left.legend(loc="upper left", bbox_to_anchor=(0.0, -0.3), ncol=1, frameon=False, fontsize=MIN_FONT_PT)


def alt_text(results: dict[str, tuple[float, float, History]]) -> str:
    """What a race frame shows: every optimizer's train and validation curve, in numbers."""
    runs = []
    for name, (lr, wd, h) in results.items():
        steps, train_loss, val_loss = finite_curve(h)
        nan = f", NaN from step {h.diverged_at}" if h.diverged else ""
        runs.append(f"{name} at lr {fmt(lr)}, weight decay {fmt(wd)} ({diagnose(h).label}): "
                    f"{curve_words('train', steps, train_loss)}; {curve_words('validation', steps, val_loss)}{nan}")
    return f"Train loss (left) and validation loss (right) against step for {len(runs)} optimizers. " + ". ".join(runs) + "."


def table(results: dict[str, tuple[float, float, History]]) -> str:
    rows = []
    for name, (lr, wd, h) in results.items():
        d = diagnose(h)
        end = "NaN" if h.diverged else f"{h.eval_train_loss[-1]:.4f} / {h.val_loss[-1]:.4f}"
        rows.append(f"<tr><td>{html.escape(name)}</td><td>{fmt(lr)}</td><td>{fmt(wd)}</td><td>{end}</td><td>{d.tag}</td></tr>")
    head = "<tr><th>optimizer</th><th>lr</th><th>weight decay</th><th>final train / val</th><th>diagnosis</th></tr>"
    return f'<table style="font-family:sans-serif;font-size:13px;border-collapse:separate;border-spacing:12px 2px">{head}{"".join(rows)}</table>'


@guarded("optimizer_race")
def optimizer_race(
    model: ModelArg = None,
    data: Dataset | None = None,
    *,
    steps: int = 200,
    optimizers: Mapping[str, OptimizerFactory] | None = None,
    lr: Mapping[str, float] | None = None,
    weight_decay: Mapping[str, float] | None = None,
    seed: int = 0,
    static: bool = False,
) -> Panel:
    """Race optimizers under matched conditions: same seeded model, data, batches and steps.

    ``optimizers``: name -> factory called as ``factory(params, lr=..., weight_decay=...)``;
    e.g. ``{"mine": g2c.training.AdamW, "torch": torch.optim.AdamW}`` races a student's AdamW
    against torch's. ``lr`` / ``weight_decay``: starting values per name. Each optimizer has
    its own lr and weight-decay slider; a change trains that one optimizer once (cached).
    ``static=True``: one slider, the same lr for every optimizer, weight decay 0.
    """
    optimizers = dict(default_optimizers() if optimizers is None else optimizers)
    if not optimizers or len(optimizers) > len(COLORS):
        raise ValueError(f"optimizers must name 1 to {len(COLORS)} optimizer factories, got {len(optimizers)}")
    for name, factory in optimizers.items():
        if not callable(factory):
            raise ValueError(f"optimizers[{name!r}] must be a factory called as factory(params, lr=..., weight_decay=...)")
    lrs = {name: check_lr(dict(lr or {}).get(name, DEFAULT_LR.get(name, 0.01)), name=f"lr[{name!r}]") for name in optimizers}
    wds = {}
    for name in optimizers:
        wd = dict(weight_decay or {}).get(name, 0.0)
        if not wd >= 0:
            raise ValueError(f"weight_decay[{name!r}] must be a non-negative number, got {wd!r}")
        wds[name] = float(wd)
    runner = Runs(model, data, None, steps=steps, seed=seed)

    def run(name: str, lr_value: float, wd: float) -> History:
        return runner.run(lr_value, weight_decay=wd, optimizer=optimizers[name], key=name)

    if static:
        grid = tuple(x for x in LR_GRID if 1e-3 <= x <= 1.0)
        figure = RaceFigure(steps)
        frames, captions, alts = [], [], []
        for x in grid:
            results = {name: (x, 0.0, run(name, x, 0.0)) for name in optimizers}
            frames.append(figure.png(results))
            captions.append(table(results))
            alts.append(alt_text(results))
        return frame_switcher(frames, [fmt(x) for x in grid], "learning rate of every optimizer", alts=alts, captions=captions, index=_nearest(grid, 0.01))

    lr_grid = tuple(sorted(set(LR_GRID) | set(lrs.values())))
    wd_grid = tuple(sorted(set(WD_GRID) | set(wds.values())))
    controls: dict[str, widgets.Widget] = {}
    rows = []
    for name in optimizers:
        lr_slider = widgets.SelectionSlider(options=[fmt(x) for x in lr_grid], index=lr_grid.index(lrs[name]), description=f"{name} lr", continuous_update=False, style=SLIDER_STYLE)
        wd_slider = widgets.SelectionSlider(options=[fmt(x) for x in wd_grid], index=wd_grid.index(wds[name]), description="weight decay", continuous_update=False, style=SLIDER_STYLE)
        controls[f"{name} lr"], controls[f"{name} weight_decay"] = lr_slider, wd_slider
        rows.append(widgets.HBox([lr_slider, wd_slider]))
    image = png_image()
    readout = widgets.HTML()
    figure = RaceFigure(steps)

    def show(_change: object = None) -> None:
        try:
            results = {}
            for name in optimizers:
                x = lr_grid[controls[f"{name} lr"].index]
                wd = wd_grid[controls[f"{name} weight_decay"].index]
                results[name] = (x, wd, run(name, x, wd))
            image.show(figure.png(results), alt_text(results))
            readout.value = table(results)
        except Exception as exc:  # noqa: BLE001 - shown in the widget
            readout.value = error_html(exc, what="optimizer_race")

    for control in controls.values():
        control.observe(show, names="index")
    show()
    intro = widgets.HTML(message_html("Same model, seed, batches and steps for every optimizer: change one knob at a time."))
    return Panel([intro, *rows, image, readout], controls=controls, image=image, readout=readout)

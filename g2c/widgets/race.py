"""``optimizer_race``: SGD, SGD with momentum and AdamW on the same model, data, seed and step budget."""

from __future__ import annotations

import functools
import html
from collections.abc import Mapping

import ipywidgets as widgets

from g2c.data import Dataset
from g2c.training import SGD, AdamW, History
from g2c.widgets.diagnosis import diagnose
from g2c.widgets.frames import Frame, Panel, guarded, static_panel
from g2c.widgets.live import GridSlider, Values, grid_with, live, nearest
from g2c.widgets.render import MIN_FONT_PT, curve_words, fmt, message_html, new_figure, png_with
from g2c.widgets.runs import LR_GRID, ModelArg, OptimizerFactory, Runs, check_lr, finite_curve, loss_unit

STATIC_LRS = tuple(x for x in LR_GRID if 1e-3 <= x <= 1.0)  # the book's slider: one lr for every optimizer
WD_GRID = (0.0, 1e-3, 1e-2, 1e-1)
COLORS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00")  # Okabe-Ito: colour-blind safe
STYLES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1)), (0, (1, 1)))  # and apart in greyscale
MARKERS = ("o", "s", "^", "D", "v", "P")  # one shape per optimizer: colour is never the only cue


def default_optimizers() -> dict[str, OptimizerFactory]:
    return {"SGD": SGD, "SGD momentum 0.9": functools.partial(SGD, momentum=0.9), "AdamW": AdamW}


DEFAULT_LR = {"SGD": 0.1, "SGD momentum 0.9": 0.01, "AdamW": 0.01}


class RaceFigure:
    """Train (left) and validation (right) loss of every optimizer on shared, fixed axes.

    The axes are laid out once; ``png(results)`` adds one frame's curves and renders.
    """

    def __init__(self, steps: int, unit: str = "MSE"):
        self.fig, (self.left, self.right) = new_figure(9.0, 4.6, ncols=2, legend_below=0.17)
        for ax, title in ((self.left, "train loss"), (self.right, "validation loss")):
            ax.set_xlim(0, steps)  # fixed, so frames compare at a glance
            ax.set_xlabel("step")
            ax.set_title(f"{title} ({unit})")

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
    return (
        '<table style="font-family:sans-serif;font-size:13px;border-collapse:separate;border-spacing:12px 2px">'
        f'{head}{"".join(rows)}</table>'
    )


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
    figure = RaceFigure(steps, loss_unit(runner.data))

    def frame(settings: dict[str, tuple[float, float]]) -> Frame:
        """The race at ``settings`` (name -> (lr, weight decay)); each run trains once (``Runs`` caches it)."""
        results = {
            name: (x, wd, runner.run(x, weight_decay=wd, optimizer=optimizers[name], key=name))
            for name, (x, wd) in settings.items()
        }
        return Frame(figure.png(results), alt_text(results), table(results))

    if static:
        frames = [frame({name: (x, 0.0) for name in optimizers}) for x in STATIC_LRS]
        return static_panel(
            "learning rate of every optimizer", [fmt(x) for x in STATIC_LRS], frames, index=nearest(STATIC_LRS, 0.01)
        )

    controls: dict[str, GridSlider] = {}
    for name in optimizers:
        controls[f"{name} lr"] = GridSlider(f"{name} lr", grid_with(LR_GRID, lrs[name]), lrs[name])
        controls[f"{name} weight_decay"] = GridSlider("weight decay", grid_with(WD_GRID, wds[name]), wds[name])

    def render(values: Values) -> Frame:
        return frame({name: (values[f"{name} lr"], values[f"{name} weight_decay"]) for name in optimizers})

    intro = widgets.HTML(message_html("Same model, seed, batches and steps for every optimizer: change one knob at a time."))
    rows = [(f"{name} lr", f"{name} weight_decay") for name in optimizers]
    return live(controls, render, what="optimizer_race", rows=rows, above=[intro])

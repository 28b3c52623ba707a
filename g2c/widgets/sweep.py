"""``lr_sweep``: one model, one seed, learning rates spaced by powers of about 3, each run named by ``diagnose``."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from g2c.data import Dataset
from g2c.training import History
from g2c.widgets.diagnosis import KINDS, STYLE, diagnose
from g2c.widgets.frames import SLIDER_LAYOUT, Frame, Panel, guarded, static_panel
from g2c.widgets.live import GridSlider, live, nearest
from g2c.widgets.render import TRAIN_COLOR, VAL_COLOR, curve_words, fmt, legend_below, message_html, new_figure, png_with
from g2c.widgets.runs import LR_GRID, ModelArg, OptimizerFactory, Runs, check_lr, check_lrs, finite_curve, loss_unit


def best_smooth_lr(lrs: Sequence[float], runs: Sequence[History]) -> float | None:
    """The largest lr whose run trains smoothly (``Diagnosis.smooth``): the module's rule for picking from a sweep."""
    good = [lr for lr, h in zip(lrs, runs) if diagnose(h).smooth]
    return max(good) if good else None


def _end_loss(history: History) -> float:
    finite = [v for v in history.val_loss if math.isfinite(v)]
    return finite[-1] if finite and not history.diverged else math.nan


class SweepFigure:
    """Left: train/val curves of the selected lr over faint other runs. Right: each run's diagnosis.

    Everything but the selected run is drawn once; ``png(i)`` adds run ``i`` and renders.
    """

    def __init__(self, lrs: Sequence[float], runs: Sequence[History], unit: str = "MSE"):
        self.lrs, self.runs = lrs, runs
        self.fig, (self.curves, self.sweep) = new_figure(9.0, 4.4, ncols=2, legend_below=0.12)
        start = runs[0].eval_train_loss[0]
        self.top = 1.3 * start
        curves, sweep = self.curves, self.sweep
        for h in runs:  # the selected run's own faint curve lies under its bold one
            steps, train_loss, _ = finite_curve(h)
            curves.plot(steps, train_loss, color="#cccccc", lw=1)
        curves.set_ylim(0, self.top)
        curves.set_xlim(0, max(1, max(x.eval_steps[-1] for x in runs)))
        curves.set_xlabel("step")
        curves.set_ylabel(f"loss ({unit})")

        labels = [diagnose(run).label for run in runs]
        for lr, run, label in zip(lrs, runs, labels):
            sweep.scatter([lr], [self._mark_height(run)], s=45, zorder=3, **STYLE[label])
        for label in (k for k in KINDS if k in labels):  # a legend entry only for labels the sweep has
            sweep.scatter([], [], label=label, **STYLE[label])
        best = best_smooth_lr(lrs, runs)
        if best is not None:
            sweep.axvline(best, color=STYLE["healthy"]["color"], ls=":", label=f"best: {fmt(best)}")
        sweep.set_xscale("log")
        sweep.set_ylim(0, 1.35 * start)
        sweep.set_xlabel("learning rate (log)")
        sweep.set_ylabel(f"final validation loss ({unit})")
        sweep.set_title("diagnoses (diverged: at the top)", fontsize=10)
        legend_below(sweep, ncol=2)

    def _mark_height(self, run: History) -> float:
        end = _end_loss(run)
        return min(end, self.top) if math.isfinite(end) else self.top

    def png(self, selected: int) -> bytes:
        return png_with(self.fig, lambda: self._add_selected(selected))

    def _add_selected(self, selected: int) -> None:
        h, curves = self.runs[selected], self.curves
        steps, train_loss, val_loss = finite_curve(h)
        curves.plot(steps, train_loss, color=TRAIN_COLOR, lw=2, label="train")
        curves.plot(steps, val_loss, color=VAL_COLOR, lw=2, ls="--", label="validation")
        if h.diverged:
            curves.axvline(h.diverged_at, color=STYLE["diverging"]["color"], ls=":", label=f"inf or NaN at step {h.diverged_at}")
        curves.set_title(f"lr = {fmt(self.lrs[selected])}: {diagnose(h).tag}", fontsize=10)
        legend_below(curves, ncol=2)
        self.sweep.scatter([self.lrs[selected]], [self._mark_height(h)], s=160, facecolors="none", edgecolors="black", zorder=4)


def alt_text(lrs: Sequence[float], runs: Sequence[History], selected: int) -> str:
    """What frame ``selected`` shows, in words and numbers: its run's curves, then the sweep's marks."""
    h, lr = runs[selected], fmt(lrs[selected])
    d = diagnose(h)
    steps, train_loss, val_loss = finite_curve(h)
    nan = f"; NaN from step {h.diverged_at}" if h.diverged else ""
    groups: dict[str, list[str]] = {}
    for x, run in zip(lrs, runs):
        groups.setdefault(diagnose(run).label, []).append(fmt(x))
    marks = "; ".join(f"{term} at {', '.join(found)}" for term, found in groups.items())
    best = best_smooth_lr(lrs, runs)
    pick = f"the largest lr that trains smoothly is {fmt(best)}" if best is not None else "no lr trains smoothly"
    return (
        f"Left: loss against step at learning rate {lr}, diagnosed {d.tag}: "
        f"{curve_words('train loss', steps, train_loss)}; {curve_words('validation loss', steps, val_loss)}{nan}. "
        f"Right: final validation loss of the sweep's {len(lrs)} learning rates from {fmt(lrs[0])} to {fmt(lrs[-1])}, "
        f"lr {lr} circled: {marks}; {pick}."
    )


def caption(lrs: Sequence[float], runs: Sequence[History], selected: int) -> str:
    d = diagnose(runs[selected])
    best = best_smooth_lr(lrs, runs)
    pick = (
        f"Largest lr that still trains smoothly: <b>{fmt(best)}</b>."
        if best is not None
        else "No lr in this sweep trains smoothly."
    )
    return message_html(
        f"<b>lr {fmt(lrs[selected])}: {d.tag}</b> ({d.reason}). {d.action}<br>{pick}",
        kind="ok" if d.label == "healthy" else "warn",
    )


def sweep_frames(lrs: Sequence[float], runs: Sequence[History], unit: str = "MSE") -> Callable[[int], Frame]:
    """Frame ``i``: run ``i`` bold over the sweep, its alt text and caption (the figure is laid out once)."""
    figure = SweepFigure(lrs, runs, unit)
    return lambda i: Frame(figure.png(i), alt_text(lrs, runs, i), caption(lrs, runs, i))


@guarded("lr_sweep")
def lr_sweep(
    model: ModelArg = None,
    data: Dataset | None = None,
    *,
    steps: int = 200,
    optimizer: OptimizerFactory | None = None,
    lrs: Sequence[float] = LR_GRID,
    lr: float = 0.1,
    seed: int = 0,
    static: bool = False,
) -> Panel:
    """Learning-rate sweep: the same seeded model trained once per lr, curves and diagnoses.

    Defaults: ``MLP([2, 32, 32, 1])`` on ``regression()`` with plain SGD, 200 steps; lrs
    1e-4 ... 3 spaced by powers of about 3 (plain SGD stalls, trains, then diverges).
    ``optimizer(params, lr=...)`` builds the optimizer (e.g. ``g2c.training.AdamW`` or
    ``torch.optim.AdamW``). Every run is made at build time, so the slider only redraws; it
    starts at the lr of the sweep nearest ``lr``.
    ``static=True``: frames for every lr, switched in the browser (no kernel needed).
    """
    lrs = check_lrs(lrs)
    check_lr(lr)
    runner = Runs(model, data, optimizer, steps=steps, seed=seed)
    frame = sweep_frames(lrs, [runner.run(x) for x in lrs], loss_unit(runner.data))
    if static:
        return static_panel("learning rate", [fmt(x) for x in lrs], [frame(i) for i in range(len(lrs))], index=nearest(lrs, lr))
    slider = GridSlider("learning rate", lrs, lr, layout=SLIDER_LAYOUT)
    return live({"lr": slider}, lambda values: frame(slider.grid.index(values["lr"])), what="lr_sweep")

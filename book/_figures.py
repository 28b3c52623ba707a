"""Figures for the Module 03B book, drawn from real runs of ``g2c.training.train``.

Every chapter's hidden code cells call one function here, so the book has no training loop
of its own: the runs are the same ``train`` the students' notebook and widgets use.
Runs take well under a second each, so the whole book executes in seconds.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")  # static PNGs; the book build has no display

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

from g2c.data import Dataset, regression, tokens
from g2c.nn import MLP, TinyLM, seeded
from g2c.training import SGD, AdamW, History, clip_grad_norm_, cosine_with_warmup, train
from g2c.widgets import STYLE, diagnose
from g2c.widgets.diagnosis import ended
from g2c.widgets.render import curve_words, min_font_px
from g2c.widgets.runs import LR_GRID, loss_unit
from g2c.widgets.sweep import best_smooth_lr

SWEEP_LRS = tuple(lr for lr in LR_GRID if lr >= 1e-3)  # the widgets' grid; below 1e-3 plain SGD only stalls more
SWEEP_STEPS = 200

# Every run here is a tiny model: a second intra-op thread buys nothing and, on a busy 2-core
# machine, made two static widgets take 37-84 s instead of 4-6 s (oversubscribed spin-waits).
# Each chapter imports this module first, so its kernel trains on one thread.
torch.set_num_threads(1)

# Text sizes are in points at 100 dpi; figures are 7-11 inches wide and shown at most ~1.3x
# smaller, so 12 pt stays above 80 % of the body text (test_book_browser measures it).
plt.rcParams.update({
    "figure.dpi": 100, "savefig.dpi": 200, "axes.spines.top": False, "axes.spines.right": False,
    "font.size": 12, "axes.titlesize": 13, "axes.labelsize": 12, "xtick.labelsize": 11.5, "ytick.labelsize": 11.5,
    "legend.fontsize": 11.5, "legend.framealpha": 0.9,
})
# Okabe-Ito (its yellow is too faint on white: a wine red instead)
RUN_COLORS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#882255")
RUN_STYLES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1)), (0, (1, 1)), (0, (8, 2)), (0, (3, 1, 1, 1, 1, 1)))


def label(history: History) -> str:
    """The run's label as every figure and caption shows it: ``g2c.widgets.diagnose``, nothing else."""
    return diagnose(history).tag


def mlp() -> MLP:
    """The regression model every optimizer comparison starts from (same seed, same weights)."""
    return seeded(0, lambda: MLP([2, 32, 32, 1]))


@functools.cache
def sgd_run(lr: float, steps: int = SWEEP_STEPS) -> History:
    """Plain SGD on the regression MLP, one run per learning rate of the sweep figure."""
    model = mlp()
    return train(model, regression(), SGD(model.parameters(), lr), steps=steps)


def sweep_runs(lrs: tuple[float, ...] = SWEEP_LRS) -> dict[float, History]:
    """The sweep: the same model from the same weights, once per learning rate."""
    return {lr: sgd_run(lr) for lr in lrs}


def counted_curve(history: History) -> tuple[list[int], list[float]]:
    """What every run figure plots: the full-split training loss at each evaluation, the very curve
    ``diagnose`` reads and counts spikes on. (Per-step batch losses showed spikes the count never saw.)"""
    return list(history.eval_steps), list(history.eval_train_loss)


def batch_words(data: Dataset) -> str:
    """How each step sees the data, in words for captions: full-batch runs are said to be full-batch."""
    n = len(data.train_x)
    if data.batch_size is None or data.batch_size >= n:
        return f"every step uses all {n} training examples (full-batch gradient descent, no sampling noise)"
    return f"every step draws a minibatch of {data.batch_size} of the {n} training examples"


def reference_lines(ax: plt.Axes, data: Dataset, *, floor: bool = True, named: bool = False) -> str:
    """The predict-the-mean loss (dotted) and the noise floor (dashed) of ``data``; returns them in words for alt text.

    ``named``: write each line's name on the plot, at its right end, instead of in the legend.
    """
    lines = [("predict-the-mean loss", data.mean_loss(), ":", "dotted")]
    if floor and data.floor is not None:
        lines.append(("noise floor", data.floor, "--", "dashed"))
    for name, value, ls, _ in lines:
        ax.axhline(value, color="0.35", ls=ls, lw=1.5, label=None if named else f"{name} {value:.3g}")
        if named:
            ax.text(0.99, value, f"{name} {value:.3g}", transform=ax.get_yaxis_transform(), ha="right", va="bottom",
                    color="0.25")
    return " and ".join(f"a {style} line at the {name} {value:.3g}" for name, value, _, style in lines)


def leaves_at(steps: list[int], values: list[float], top: float, diverged_at: int | None = None) -> int | None:
    """The step where a curve first goes above ``top`` or stops being finite (None if it stays inside)."""
    return next((s for s, v in zip(steps, values) if not (math.isfinite(v) and v <= top)), diverged_at)


def plot_curve(ax: plt.Axes, steps: list[int], values: list[float], top: float, diverged_at: int | None = None,
               row: int = 0, **style) -> int | None:
    """One curve; where it leaves the top of the plot or turns NaN a cross sits on the top edge (``row`` > 0: that
    many rows under it, when several runs leave at the same step).

    Returns the step of that cross (None if the curve stays inside): the alt text says it too.
    """
    (line,) = ax.plot(steps, values, **style)
    out = leaves_at(steps, values, top, diverged_at)
    if out is not None:
        y = top / 1.15**row if ax.get_yscale() == "log" else top * (1 - 0.05 * row)
        ax.plot([out], [y], "x", color=line.get_color(), ms=11, mew=2.5, clip_on=False, zorder=5)
    return out


def curve_alt(name: str, steps: list[int], values: list[float], top: float, out: int | None,
              diverged_at: int | None = None) -> str:
    """One curve in words: start, lowest point and end, where it left the plot and where it stopped being finite."""
    inside = [(s, v) for s, v in zip(steps, values) if math.isfinite(v) and v <= top]
    words = curve_words(name, [s for s, _ in inside], [v for _, v in inside])
    if out is not None and out != diverged_at:
        words += f", then leaves the plot above {top:.3g} at step {out}"
    if diverged_at is not None:
        words += f", no longer finite (inf or NaN) at step {diverged_at}"
    return words


def _top(histories: list[History], headroom: float = 1.5) -> float:
    """A y limit that shows every run that does not diverge: the diverging ones leave through the top, marked."""
    kept = [v for h in histories if diagnose(h).label != "diverging" for v in h.eval_train_loss + h.val_loss]
    return headroom * max(v for v in kept if math.isfinite(v))


def _bottom(histories: list[History], data: Dataset | None = None) -> float:
    finite = [v for h in histories for v in h.eval_train_loss + h.val_loss if math.isfinite(v) and v > 0]
    low = min(finite + ([data.floor] if data is not None and data.floor else []))
    return 0.7 * low


def lr_sweep_figure(runs: dict[float, History]) -> Figure:
    """The full-split training loss of each sweep run (the curve ``diagnose`` counts spikes on), labelled by ``diagnose``."""
    fig, ax = plt.subplots(figsize=(8, 4.6), layout="constrained")
    ax.set_yscale("log")
    top, data = _top(list(runs.values())), regression()
    crosses: dict[int, int] = {}  # step -> crosses already drawn there
    for i, (lr, history) in enumerate(runs.items()):
        steps, values = counted_curve(history)
        out = leaves_at(steps, values, top, history.diverged_at)
        plot_curve(ax, steps, values, top, history.diverged_at, row=crosses.get(out, 0),
                   color=RUN_COLORS[i % len(RUN_COLORS)], ls=RUN_STYLES[i % len(RUN_STYLES)], lw=2,
                   label=f"lr={lr:g}: {label(history)}")
        crosses[out] = crosses.get(out, 0) + 1
    reference_lines(ax, data, floor=False)
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # under two decades: 0.05, 0.1, 0.2 ... read faster
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(_bottom(list(runs.values())), top)
    ax.set_xlabel("step")
    ax.set_ylabel(f"training loss ({loss_unit(data)}, full split, log)")
    ax.set_title("Full-batch SGD on the same MLP, one run per learning rate")
    fig.legend(loc="outside right center", frameon=False)  # beside the axes: it covers no curve
    return fig


def lr_sweep_alt(runs: dict[float, History]) -> str:
    """The sweep figure in words, from the same runs."""
    top = _top(list(runs.values()))
    parts = []
    for lr, h in runs.items():
        steps, values = counted_curve(h)
        out = leaves_at(steps, values, top, h.diverged_at)
        parts.append(f"lr {lr:g} ({label(h)}): " + curve_alt("loss", steps, values, top, out, h.diverged_at))
    return (f"Log-scale training loss (MSE on the full training split, every 10 steps) against step for full-batch SGD "
            f"at {len(runs)} learning rates, with a dotted line at the predict-the-mean loss "
            f"{regression().mean_loss():.3g}; a cross on the top edge marks where a run leaves the plot or stops being "
            "finite (inf or NaN). "
            + "; ".join(parts) + ".")


def _runs_by_label(runs: dict[float, History]) -> dict[str, list[float]]:
    """Learning rates grouped by their run's label, in sweep order."""
    groups: dict[str, list[float]] = {}
    for lr, history in runs.items():
        groups.setdefault(label(history), []).append(lr)
    return groups


def _rates(lrs: list[float]) -> str:
    """'lr 0.1', 'lr 1 and 3' or 'lr 0.0001 to 0.03' (the runs of one label are neighbours in a sweep)."""
    if len(lrs) == 1:
        return f"lr {lrs[0]:g}"
    return f"lr {lrs[0]:g} and {lrs[1]:g}" if len(lrs) == 2 else f"lr {lrs[0]:g} to {lrs[-1]:g}"


def sweep_summary(runs: dict[float, History]) -> str:
    """'**stalled** at lr 0.001 to 0.03; **healthy** at lr 0.1; ...': each label with its rates."""
    return "; ".join(f"**{name}** at {_rates(lrs)}" for name, lrs in _runs_by_label(runs).items())


def widget_sweep_summary() -> str:
    """The sweep widget's runs (``lr_sweep``'s defaults: the same model, data, seed and steps as ``sgd_run``) by label."""
    return sweep_summary({lr: sgd_run(lr) for lr in LR_GRID}) + "."


def race_runs() -> dict[str, dict[float, History]]:
    """The optimizer race's static runs (``optimizer_race(static=True)``'s settings: the same model, seed, data, 200
    steps, weight decay 0): the comparison's sweeps at the race's rates, optimizer -> lr -> History."""
    from g2c.widgets.race import STATIC_LRS

    return {name: {lr: by_lr[lr] for lr in STATIC_LRS} for name, by_lr in optimizer_sweeps().items()}


def race_summary() -> str:
    """The optimizer race's static frames as a Markdown table: each optimizer's label at each lr."""
    runs = race_runs()
    rows = ["| lr | " + " | ".join(runs) + " |", "| --- |" + " --- |" * len(runs)]
    for lr in next(iter(runs.values())):  # the static race's slider positions
        rows.append(f"| {lr:g} | " + " | ".join(label(by_lr[lr]) for by_lr in runs.values()) + " |")
    return "\n".join(rows)


def race_ranges() -> str:
    """For each optimizer of the race, the learning rates at which its run is healthy (Markdown)."""
    parts = []
    for name, by_lr in race_runs().items():
        good = [lr for lr, h in by_lr.items() if diagnose(h).label == "healthy"]
        parts.append(f"{name} at {_rates(good)}" if good else f"{name} at none of them")
    return "Healthy runs: " + "; ".join(parts) + "."


def lr_sweep_caption(runs: dict[float, History]) -> str:
    """The sweep's caption, written from the classifier's labels (Markdown)."""
    parts = [sweep_summary(runs)]
    best = best_smooth_lr(list(runs), list(runs.values()))
    pick = (
        f"The largest rate that trains smoothly (healthy, at most one spike) is {best:g}."
        if best is not None
        else "No rate trains smoothly."
    )
    return (f"An LR sweep on one model, each run named by `g2c.widgets.diagnose`: {parts[0]}. Plain SGD here is "
            f"full-batch: {batch_words(regression())}. The curves are the training loss on the whole training split, "
            f"measured every 10 steps: the curve `diagnose` reads, so its spikes are the ones the legend counts. A cross on "
            f"the top edge marks where a run leaves the plot or stops being finite (inf or NaN). {pick}")


def show(fig: Figure, alt: str | None = None):
    """The figure as a 2x PNG shown at its 100-dpi size (sharp on HiDPI screens; the Agg backend has no inline display).

    ``alt``: the figure in words, written from the same runs; it travels in the PNG and
    ``book/_ext/figure_alt.py`` makes it the image's alt text.
    """
    from IPython.display import Image

    width = round(fig.get_figwidth() * 100)
    return Image(png_bytes(fig, alt), format="png", width=width)


def png_bytes(fig: Figure, alt: str | None = None) -> bytes:
    """Render a figure to PNG bytes with the Agg backend and free it; the PNG records its smallest font (tEXt
    ``min-font-px``) and, given one, its alt text (``alt``)."""
    buffer = io.BytesIO()
    dpi = plt.rcParams["savefig.dpi"]
    metadata = {"min-font-px": f"{min_font_px(fig, dpi):.2f}"}
    if alt:
        metadata["alt"] = alt
    fig.savefig(buffer, format="png", dpi=dpi, metadata=metadata)
    plt.close(fig)
    return buffer.getvalue()


MATCHED_STEPS = 200  # the optimizer race's budget: its static runs are these sweeps' (race_runs)
COMPARED = {"SGD": SGD, "SGD momentum 0.9": functools.partial(SGD, momentum=0.9), "AdamW": AdamW}  # the race's three


def _mlp_run(factory: Callable[..., object], lr: float, steps: int, **train_kwargs) -> History:
    model = mlp()
    return train(model, regression(), factory(model.parameters(), lr), steps=steps, **train_kwargs)


@functools.cache
def optimizer_sweeps() -> dict[str, dict[float, History]]:
    """Each optimizer of the comparison at every rate of the widgets' grid for ``MATCHED_STEPS``: optimizer -> lr -> History."""
    return {name: {lr: _mlp_run(factory, lr, MATCHED_STEPS) for lr in LR_GRID} for name, factory in COMPARED.items()}


def final_loss(history: History) -> float:
    """Where a run's validation loss ended, by the book's rule (median of the last three evaluations); inf if it diverged."""
    return math.inf if history.diverged or diagnose(history).label == "diverging" else ended(history.val_loss)


def tuned_lr(by_lr: dict[float, History]) -> float:
    """The rate whose run ends lowest: tuning on the validation loss, diverging runs never chosen."""
    return min(by_lr, key=lambda lr: final_loss(by_lr[lr]))


def matched_runs() -> dict[str, History]:
    """Each optimizer at its own tuned rate: same MLP, initial weights, data and steps; name -> History."""
    return {f"{name} lr {tuned_lr(by_lr):g}": by_lr[tuned_lr(by_lr)] for name, by_lr in optimizer_sweeps().items()}


def sgd_vs_adamw_figure(runs: dict[str, History]) -> Figure:
    """Left: the sweep, where each optimizer's runs end against lr, its tuned rate circled. Right: the tuned runs'
    validation curves beside the predict-the-mean loss and the noise floor."""
    sweeps, data = optimizer_sweeps(), regression()
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 5.4), layout="constrained")
    finite = [final_loss(h) for by_lr in sweeps.values() for h in by_lr.values() if math.isfinite(final_loss(h))]
    top = 1.6 * max(finite + [v for h in runs.values() for v in h.val_loss])
    for n, (by_lr, color, ls, marker) in enumerate(zip(sweeps.values(), RUN_COLORS, ("--", ":", "-"), ("s", "^", "o"))):
        lrs = list(by_lr)
        ends = [final_loss(by_lr[lr]) for lr in lrs]
        left.plot(lrs, [e if math.isfinite(e) else math.nan for e in ends], color=color, ls=ls, marker=marker, lw=1.8)
        gone = [lr for lr, e in zip(lrs, ends) if not math.isfinite(e)]
        left.plot(gone, [top / 1.3 ** (n + 1)] * len(gone), "x", color=color, ms=10, mew=2.2)  # one row per optimizer
        best = tuned_lr(by_lr)
        left.plot([best], [final_loss(by_lr[best])], "o", ms=15, mfc="none", mec="black", mew=1.5)
    for (name, history), color, ls in zip(runs.items(), RUN_COLORS, ("--", ":", "-")):
        right.plot(history.eval_steps, history.val_loss, color=color, lw=2.2, ls=ls, label=f"{name}: {label(history)}")
    for ax in (left, right):
        reference_lines(ax, data)
        ax.set_yscale("log")
        ax.set_ylim(0.7 * data.floor, top)
    left.set_xscale("log")
    left.set_xlabel("learning rate (log)")
    left.set_ylabel("final validation loss (MSE, log)")
    left.set_title("Sweep (x: diverged; circle: tuned)")
    right.set_xlabel("step")
    right.set_ylabel("validation loss (MSE, log)")
    right.set_title("The tuned runs")
    handles, labels = right.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=2, frameon=False)
    return fig


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if a / b < 1.5 else f"{a / b:.1f}"


def comparison_numbers(runs: dict[str, History]) -> dict[str, float]:
    """The comparison's glued numbers: each tuned run's final validation loss, and the floor and mean they sit between."""
    data = regression()
    return {**{name: final_loss(h) for name, h in runs.items()}, "floor": data.floor, "mean": data.mean_loss()}


def sgd_vs_adamw_caption(runs: dict[str, History]) -> str:
    """The comparison's caption: how each rate was picked, each tuned run's final loss and label, the ratios (Markdown)."""
    data, numbers = regression(), comparison_numbers(runs)
    ends = "; ".join(f"{name} ends at {numbers[name]:.4f} ({label(h)})" for name, h in runs.items())
    adamw = next(name for name in runs if name.startswith("AdamW"))
    others = [name for name in runs if name != adamw]
    ratios = " and ".join(f"{_ratio(numbers[name], numbers[adamw])} times lower than {name.rsplit(' lr', 1)[0]}"
                          for name in others)
    return (f"A fair comparison: each optimizer at its own best rate. Left: every rate of the grid "
            f"{LR_GRID[0]:g} to {LR_GRID[-1]:g}, for {MATCHED_STEPS} steps from the same initial weights; a run ends "
            f"at the median of its last three validation losses, and each optimizer keeps the rate that ends lowest "
            f"(circled; diverging runs are never kept). Right: the tuned runs: {ends}. Tuned AdamW ends {ratios}; the "
            f"noise floor (dashed) is {numbers['floor']:.4f} and the predict-the-mean loss (dotted) {numbers['mean']:.3f}. "
            f"The spike counts are `diagnose`'s, made on the full-split training loss, whose spikes the validation "
            f"curves share. "
            f"Every run is full-batch: {batch_words(data)}. AdamW runs with weight decay 0 here, so it is Adam: "
            f"decay is a regularizer, shown in the chapter on regularization.")


def sgd_vs_adamw_alt(runs: dict[str, History]) -> str:
    """The comparison figure in words, from the same runs."""
    sweeps, numbers = optimizer_sweeps(), comparison_numbers(runs)
    left = []
    for name, by_lr in sweeps.items():
        ends = ", ".join(f"{lr:g}: {final_loss(h):.3g}" if math.isfinite(final_loss(h)) else f"{lr:g}: diverged"
                         for lr, h in by_lr.items())
        left.append(f"{name} ({ends}; tuned {tuned_lr(by_lr):g})")
    right = "; ".join(f"{name} ({label(h)}): " + curve_words("validation loss", h.eval_steps, h.val_loss)
                      for name, h in runs.items())
    return (f"Two log-scale panels with a dotted line at the predict-the-mean loss {numbers['mean']:.3g} and a dashed line "
            f"at the noise floor {numbers['floor']:.3g}. Left, final validation loss (MSE) against learning rate: "
            + "; ".join(left) + f". Right, validation loss against step for the tuned runs: {right}.")


class StepRecorder:
    """An optimizer wrapper that records, per parameter tensor and step, the RMS of its gradient and of its update.

    ``train`` sees an ordinary optimizer (``zero_grad``, ``step``, ``lr``): the run is unchanged, only watched.
    """

    def __init__(self, optimizer, named: list[tuple[str, torch.Tensor]]):
        self.optimizer, self.named = optimizer, named
        self.grad_rms: dict[str, list[float]] = {name: [] for name, _ in named}
        self.update_rms: dict[str, list[float]] = {name: [] for name, _ in named}

    @property
    def lr(self) -> float:
        return self.optimizer.lr

    @lr.setter
    def lr(self, value: float) -> None:
        self.optimizer.lr = value

    def zero_grad(self) -> None:
        self.optimizer.zero_grad()

    def step(self) -> None:
        before = [p.detach().clone() for _, p in self.named]
        for name, p in self.named:
            self.grad_rms[name].append(float(p.grad.pow(2).mean().sqrt()))
        self.optimizer.step()
        for (name, p), old in zip(self.named, before):
            self.update_rms[name].append(float((p.detach() - old).pow(2).mean().sqrt()))


def tensor_names(model: MLP) -> list[tuple[str, torch.Tensor]]:
    """'layer 1 weights (2x32)'-style names for the MLP's parameter tensors, in order."""
    named = []
    for i, layer in enumerate(m for m in model.net if isinstance(m, torch.nn.Linear)):
        named.append((f"layer {i + 1} weights ({layer.in_features}x{layer.out_features})", layer.weight))
        named.append((f"layer {i + 1} biases ({layer.out_features})", layer.bias))
    return named


LAYER_OPTIMIZERS = ("SGD", "AdamW")


@functools.cache
def layer_scale_runs() -> dict[str, StepRecorder]:
    """Full-batch SGD and AdamW on the MLP at their tuned rates, watched tensor by tensor: name -> the recorder."""
    found = {}
    for optimizer in LAYER_OPTIMIZERS:
        factory, lr = COMPARED[optimizer], tuned_lr(optimizer_sweeps()[optimizer])
        name = f"{optimizer} lr {lr:g}"
        model = mlp()
        recorder = StepRecorder(factory(model.parameters(), lr), tensor_names(model))
        train(model, regression(), recorder, steps=MATCHED_STEPS)
        found[name] = recorder
    return found


def _median(values: list[float]) -> float:
    return float(np.median(values))


def layer_spread(recorder: StepRecorder, what: str = "update_rms") -> float:
    """How many times larger the largest tensor's typical (median) step is than the smallest one's."""
    typical = [_median(v) for v in getattr(recorder, what).values()]
    return max(typical) / min(typical)


def layer_scales_figure(runs: dict[str, StepRecorder]) -> Figure:
    """Per tensor, the RMS of each step's parameter change: SGD's follow the gradients' scales, AdamW's all sit near lr."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 5.6), layout="constrained", sharey=True)
    for ax, (name, recorder) in zip(axes, runs.items()):
        for i, (tensor, values) in enumerate(recorder.update_rms.items()):
            ax.plot(range(len(values)), values, color=RUN_COLORS[i], ls=RUN_STYLES[i], lw=1.6, label=tensor)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(f"{name}: steps differ {layer_spread(recorder):.0f}x")
    axes[0].set_ylabel("RMS of the step per element (log)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=2, frameon=False)
    return fig


def layer_scales_caption(runs: dict[str, StepRecorder]) -> str:
    """The per-layer figure's numbers, from the recorders (Markdown)."""
    parts = []
    for name, recorder in runs.items():
        typical = {tensor: _median(v) for tensor, v in recorder.update_rms.items()}
        big, small = max(typical, key=typical.get), min(typical, key=typical.get)
        parts.append(f"under **{name}** the typical (median) step of the {big} is {layer_spread(recorder):.0f} times "
                     f"that of the {small} ({typical[big]:.2g} against {typical[small]:.2g} per element)")
    return (f"The size of every step, tensor by tensor, in the two tuned runs of the comparison ({MATCHED_STEPS} "
            f"full-batch steps on the MLP): " + "; ".join(parts) + ". SGD's step is lr times the gradient, so it inherits "
            "each tensor's gradient scale; AdamW divides each element's step by its own $\\sqrt{\\hat v}$, which evens "
            "the tensors out. Neither moves by the full learning rate: where a gradient keeps changing sign, $\\hat m$ "
            "averages it down while $\\sqrt{\\hat v}$ does not.")


def layer_scales_alt(runs: dict[str, StepRecorder]) -> str:
    panels = []
    for name, recorder in runs.items():
        typical = ", ".join(f"{tensor} {_median(v):.2g}" for tensor, v in recorder.update_rms.items())
        panels.append(f"{name}: median step per element {typical}; learning rate {recorder.lr:g}")
    return ("Two log-scale panels of the RMS per element of each step's parameter change against step, one line per "
            "tensor of the MLP. " + ". ".join(panels) + ".")


SPIKE_AT, SPIKE_FACTOR = 100, 100  # one corrupted batch: at step 100 every target is multiplied by 100
SPIKE_MAX_NORM = 5.0  # the guardrail: above the gradient norm of every clean step of these runs
EVERY_STEP_MAX_NORM = 0.01  # below every gradient norm of the run: clipping fires on every step
SPIKE_STEPS, SPIKE_EVAL = 300, 5


class SpikedData:
    """``regression()`` with one corrupted batch (targets x ``SPIKE_FACTOR``) at step ``SPIKE_AT``: one bad batch,
    a real data bug's shape. Everything else (evaluation, baseline) is the clean dataset's."""

    def __init__(self, data: Dataset):
        self.data, self.calls = data, 0

    def batch(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.data.batch(generator)
        self.calls += 1
        return (x, y * SPIKE_FACTOR) if self.calls - 1 == SPIKE_AT else (x, y)

    def __getattr__(self, name: str):
        return getattr(self.data, name)


class MomentsAdamW(AdamW):
    """g2c's AdamW that also records, after every step, the RMS over all weights of $\\sqrt{\\hat v}$: the
    denominator each element's step is divided by."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sqrt_v: list[float] = []

    def step(self) -> None:
        super().step()
        correction = 1 - self.betas[1] ** self.step_count
        total = sum(float(v.sum()) for v in self.v) / sum(v.numel() for v in self.v)
        self.sqrt_v.append(math.sqrt(total / correction))


SPIKE_CASES = {  # name -> (optimizer, lr, spiked?, max_norm)
    "SGD, clean data": (SGD, 0.1, False, None),
    "SGD, spike": (SGD, 0.1, True, None),
    f"SGD, spike, clip {SPIKE_MAX_NORM:g}": (SGD, 0.1, True, SPIKE_MAX_NORM),
    "AdamW, clean data": (MomentsAdamW, 0.01, False, None),
    "AdamW, spike": (MomentsAdamW, 0.01, True, None),
    f"AdamW, spike, clip {SPIKE_MAX_NORM:g}": (MomentsAdamW, 0.01, True, SPIKE_MAX_NORM),
    f"AdamW, spike, clip {EVERY_STEP_MAX_NORM:g}": (MomentsAdamW, 0.01, True, EVERY_STEP_MAX_NORM),
}


@functools.cache
def spike_runs() -> dict[str, tuple[History, list[float] | None]]:
    """Each case of ``SPIKE_CASES``: its History and, for AdamW, the RMS of $\\sqrt{\\hat v}$ after every step."""
    found = {}
    for name, (factory, lr, spiked, max_norm) in SPIKE_CASES.items():
        model = mlp()
        optimizer = factory(model.parameters(), lr)
        data = SpikedData(regression()) if spiked else regression()
        history = train(model, data, optimizer, steps=SPIKE_STEPS, clip=max_norm, eval_every=SPIKE_EVAL)
        found[name] = (history, getattr(optimizer, "sqrt_v", None))
    return found


def spike_figure(runs: dict[str, tuple[History, list[float] | None]]) -> Figure:
    """SGD's and AdamW's full-split training loss with and without clipping around one corrupted batch, and AdamW's
    $\\sqrt{\\hat v}$: what the spike leaves behind in the second moment."""
    fig, axes = plt.subplots(3, 1, figsize=(8, 13), layout="constrained")
    data = regression()
    histories = [h for h, _ in runs.values()]
    top = _top(histories, headroom=3)
    for ax, optimizer in zip(axes[:2], ("SGD", "AdamW")):
        mine = {name: h for name, (h, _) in runs.items() if name.startswith(optimizer)}
        for i, (name, h) in enumerate(mine.items()):
            steps, values = counted_curve(h)
            clipped = f" (clipped on {_fired(h)})" if any(h.clipped) else ""
            plot_curve(ax, steps, values, top, h.diverged_at, color=RUN_COLORS[i], ls=RUN_STYLES[i], lw=2,
                       label=f"{name.split(', ', 1)[1]}{clipped}: {label(h)}")
        reference_lines(ax, data, named=True)
        ax.set_yscale("log")
        ax.set_ylim(_bottom(histories, data), top)
        ax.set_ylabel(f"training loss ({loss_unit(data)}, log)")
        ax.set_title(f"{optimizer} (lr {SPIKE_CASES[next(iter(mine))][1]:g}); x: leaves the plot")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1, frameon=False)
    moments = axes[2]
    for i, (name, (_, sqrt_v)) in enumerate((n, r) for n, r in runs.items() if r[1] is not None):
        moments.plot(range(len(sqrt_v)), sqrt_v, color=RUN_COLORS[i], ls=RUN_STYLES[i], lw=2, label=name.split(", ", 1)[1])
    moments.set_yscale("log")
    moments.set_ylabel("RMS of $\\sqrt{\\hat v}$ (log)")
    moments.set_title("AdamW: what the spike leaves in the second moment")
    moments.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    for ax in axes:
        ax.axvline(SPIKE_AT, color=STYLE["diverging"]["color"], lw=1, ls=(0, (2, 2)))
        ax.set_xlabel("step")
        ax.set_xlim(0, SPIKE_STEPS)
    axes[0].text(SPIKE_AT + 4, top / 1.5, f"corrupted batch (targets x{SPIKE_FACTOR})", color="0.2", va="top")
    return fig


def spike_numbers(runs: dict[str, tuple[History, list[float] | None]]) -> dict[str, float]:
    """The numbers the clipping text quotes, from the runs: ends, clip rates, and $\\sqrt{\\hat v}$ before, after, at the end."""
    out: dict[str, float] = {}
    for name, (h, sqrt_v) in runs.items():
        out[f"{name}: end"] = final_loss(h)
        out[f"{name}: clip rate"] = h.clip_rate
        out[f"{name}: spike norm"] = h.grad_norm[SPIKE_AT] if len(h.grad_norm) > SPIKE_AT else math.nan
        out[f"{name}: median norm"] = _median(h.grad_norm)
        out[f"{name}: max norm"] = max(h.grad_norm)
        if sqrt_v is not None:
            out[f"{name}: sqrt v before"] = sqrt_v[SPIKE_AT - 1]
            out[f"{name}: sqrt v after"] = sqrt_v[SPIKE_AT]
            out[f"{name}: sqrt v end"] = sqrt_v[-1]
    return out


def _end_words(h: History) -> str:
    return f"is NaN from step {h.diverged_at}" if h.diverged else f"ends at {final_loss(h):.4f}"


def _fired(h: History) -> str:
    """'2 steps (100 and 101)' or '300 steps (every one)': where clipping fired."""
    steps = [i for i, c in enumerate(h.clipped) if c]
    if len(steps) == len(h.clipped):
        return f"all {len(steps)} steps"
    shown = " and ".join(map(str, steps)) if len(steps) <= 3 else f"{steps[0]} to {steps[-1]}"
    return f"{len(steps)} step{'s' * (len(steps) != 1)} ({shown})"


def spike_caption(runs: dict[str, tuple[History, list[float] | None]]) -> str:
    """The spike figure's caption: every number from the runs (Markdown)."""
    n = spike_numbers(runs)
    h = {name: r[0] for name, r in runs.items()}
    clip, every = f"clip {SPIKE_MAX_NORM:g}", f"clip {EVERY_STEP_MAX_NORM:g}"
    return (
        f"One corrupted batch (every target times {SPIKE_FACTOR}) at step {SPIKE_AT} of {SPIKE_STEPS} full-batch steps on "
        f"the MLP; its gradient norm is {n['SGD, spike: spike norm']:.0f} under SGD, where the clean run's is "
        f"{n['SGD, clean data: median norm']:.2g} at the median and never above {n['SGD, clean data: max norm']:.2g}. "
        f"Curves: the training loss on the clean split every {SPIKE_EVAL} steps. **SGD** (top): unclipped, the run "
        f"{_end_words(h['SGD, spike'])}; clipped at max_norm {SPIKE_MAX_NORM:g} it ends at "
        f"{n[f'SGD, spike, {clip}: end']:.4f}, beside the clean run's {n['SGD, clean data: end']:.4f} (clipping fired on "
        f"{_fired(h[f'SGD, spike, {clip}'])}). **AdamW** (middle): "
        f"unclipped, the spike raises the RMS of $\\sqrt{{\\hat v}}$ from {n['AdamW, spike: sqrt v before']:.2g} to "
        f"{n['AdamW, spike: sqrt v after']:.2g}, still {n['AdamW, spike: sqrt v end']:.2g} at the end (bottom), and the "
        f"run ends at {n['AdamW, spike: end']:.4f}; clipped at {SPIKE_MAX_NORM:g} (it fired on "
        f"{_fired(h[f'AdamW, spike, {clip}'])}) $\\sqrt{{\\hat v}}$ only goes to "
        f"{n[f'AdamW, spike, {clip}: sqrt v after']:.2g} and the run ends at {n[f'AdamW, spike, {clip}: end']:.4f}, like "
        f"the clean run's {n['AdamW, clean data: end']:.4f}. Clipped at {EVERY_STEP_MAX_NORM:g}, on "
        f"{_fired(h[f'AdamW, spike, {every}'])}, AdamW still ends at "
        f"{n[f'AdamW, spike, {every}: end']:.4f}: dividing by $\\sqrt{{\\hat v}}$ undoes a rescaling of the gradient, "
        f"exactly (up to its $\\epsilon$) for a constant one and nearly for this slowly changing one, so under AdamW "
        f"clipping does not shorten the steps; what it buys is that one spike moves $m$ and $v$ less.")


def spike_alt(runs: dict[str, tuple[History, list[float] | None]]) -> str:
    histories = [h for h, _ in runs.values()]
    top = _top(histories, headroom=3)
    parts = []
    for name, (h, sqrt_v) in runs.items():
        steps, values = counted_curve(h)
        out = leaves_at(steps, values, top, h.diverged_at)
        words = f"{name} ({label(h)}, clipped on {100 * h.clip_rate:.0f}% of steps): " + curve_alt(
            "loss", steps, values, top, out, h.diverged_at)
        if sqrt_v is not None:
            words += (f"; RMS of root v-hat {sqrt_v[SPIKE_AT - 1]:.2g} before the spike, {sqrt_v[SPIKE_AT]:.2g} after it, "
                      f"{sqrt_v[-1]:.2g} at the end")
        parts.append(words)
    return (f"Three panels against step, a vertical line at the corrupted batch of step {SPIKE_AT}: SGD's and AdamW's "
            f"log-scale training loss (MSE) with and without clipping, beside the predict-the-mean loss and the noise "
            f"floor, then AdamW's RMS of root v-hat. " + "; ".join(parts) + ".")


def lr_sweep_answer(runs: dict[float, History]) -> str:
    """The answer to 'which rate would you keep?', from the sweep's own labels."""
    lrs = list(runs)
    best = best_smooth_lr(lrs, list(runs.values()))
    if best is None:
        return "None of these rates trains smoothly: sweep again around the boundary."
    above = lrs[lrs.index(best) + 1] if lrs.index(best) + 1 < len(lrs) else None
    verdict = f" The next rate, {above:g}, is **{label(runs[above])}**: " if above is not None else ""
    reason = ("it still learns, but each spike is a step that overshot, and a slightly different seed or batch could "
              "turn one into a divergence." if above is not None and diagnose(runs[above]).label == "healthy"
              else "it does not train." if above is not None else "")
    return f"Keep **{best:g}**: it is the largest rate whose run is healthy with at most one spike.{verdict}{reason}"


def sgd_vs_adamw_answer(runs: dict[str, History]) -> str:
    """The answer to 'which run ends closest to the predict-the-mean loss?', from the runs."""
    name, history = max(runs.items(), key=lambda item: ended(item[1].val_loss) / item[1].baseline_loss)
    share = 100 * ended(history.val_loss) / history.baseline_loss
    return (f"**{name}**: its validation loss ends at {share:.0f}% of the predict-the-mean loss (the median of its last "
            f"three evaluations, as `diagnose` reads it), and `diagnose` calls it "
            f"**{label(history)}**: {diagnose(history).reason}.")


def _grads(*shapes_and_values: torch.Tensor) -> list[torch.Tensor]:
    """Parameters whose ``.grad`` is the given tensor: what ``clip_grad_norm_`` sees after backward."""
    params = []
    for value in shapes_and_values:
        p = torch.zeros_like(value, requires_grad=True)
        p.grad = value.clone()
        params.append(p)
    return params


def clipping_figure(max_norm: float = 1.0) -> Figure:
    """Three panels: a vector's L2 norm; the global norm over several tensors; clipping as one shared scale."""
    fig, axes = plt.subplot_mosaic([["norm", "global"], ["clip", "clip"]], figsize=(8, 8.4), layout="constrained",
                                   height_ratios=[1, 1.25])
    ax1, ax2, ax3 = axes["norm"], axes["global"], axes["clip"]

    # 1. A vector's norm: the length of the arrow.
    g = torch.tensor([3.0, 4.0])
    ax1.annotate("", xy=g.tolist(), xytext=(0, 0), arrowprops={"arrowstyle": "-|>", "lw": 2, "color": "#0072B2"})
    ax1.plot([0, 3, 3], [0, 0, 4], ":", color="0.5")
    ax1.text(1.5, -0.45, "$g_1 = 3$", ha="center")
    ax1.text(3.15, 2.0, "$g_2 = 4$", va="center")
    ax1.text(0.2, 2.6, f"$\\|g\\|_2 = {float(torch.linalg.vector_norm(g)):g}$", color="#0072B2", fontsize=13)
    ax1.set_xlim(-0.5, 4.5)
    ax1.set_ylim(-0.9, 4.5)
    ax1.set_aspect("equal")
    ax1.set_title("1. A norm measures one vector")

    # 2. Global norm: every tensor's norm, combined as if all were one long vector.
    params = _grads(torch.tensor([[0.6, -0.8], [1.2, 0.4]]), torch.tensor([2.0, -1.0, 0.5]), torch.tensor([0.3]))
    norms = [float(torch.linalg.vector_norm(p.grad)) for p in params]
    total = float(clip_grad_norm_(params, math.inf))
    names = ["W (2×2)", "b (3)", "c (1)", "global"]
    ax2.bar(names, norms + [total], color=["#0072B2"] * len(norms) + ["#D55E00"])
    for i, value in enumerate(norms + [total]):
        ax2.text(i, value + 0.05, f"{value:.2f}", ha="center")
    ax2.set_ylabel("L2 norm")
    ax2.set_title("2. Global norm = √(Σ per-tensor norm²)")

    # 3. Clipping multiplies every gradient by the same scale: the direction survives.
    params = _grads(torch.tensor([2.4]), torch.tensor([1.8]))
    before = [float(p.grad) for p in params]
    total = float(clip_grad_norm_(params, max_norm))
    after = [float(p.grad) for p in params]
    for vec, color, ls, label in (
        (before, "0.6", "--", f"before: norm {total:.2f}"),
        (after, "#D55E00", "-", f"after: norm {math.hypot(*after):.2f}"),
    ):
        ax3.annotate("", xy=vec, xytext=(0, 0), arrowprops={"arrowstyle": "-|>", "lw": 2, "ls": ls, "color": color})
        ax3.plot([], [], color=color, lw=2, ls=ls, label=label)
    circle = plt.Circle((0, 0), max_norm, fill=False, ls="--", color="#D55E00", alpha=0.6)
    ax3.add_patch(circle)
    ax3.set_xlim(-0.3, 3.0)
    ax3.set_ylim(-0.3, 2.4)
    ax3.set_aspect("equal")
    ax3.set_xlabel(f"gradient of tensor 1   (max_norm = {max_norm:g})")
    ax3.set_ylabel("gradient of tensor 2")
    ax3.legend(loc="upper left", frameon=False)
    ax3.set_title("3. Clipping: one shared scale")
    return fig


def schedule_figure(warmup_steps: int = 100, max_steps: int = 1000, max_lr: float = 3e-3, min_lr: float = 3e-4) -> Figure:
    """``cosine_with_warmup`` at every step, past ``max_steps`` to show the floor."""
    steps = list(range(int(max_steps * 1.15)))
    lrs = [cosine_with_warmup(t, warmup_steps=warmup_steps, max_steps=max_steps, max_lr=max_lr, min_lr=min_lr) for t in steps]
    fig, ax = plt.subplots(figsize=(8, 4.4), layout="constrained")
    ax.plot(steps, lrs, color="#0072B2", lw=2)
    ax.axvspan(0, warmup_steps, color="#E69F00", alpha=0.12, label="linear warmup")
    ax.axvspan(warmup_steps, max_steps, color="#0072B2", alpha=0.06, label="cosine decay")
    ax.axvspan(max_steps, steps[-1], color="0.5", alpha=0.10, label="floor: min_lr")
    for start, stop, name in (
        (0, warmup_steps, "warmup"), (warmup_steps, max_steps, "cosine decay"), (max_steps, steps[-1], "floor")
    ):
        ax.text((start + stop) / 2, 0.5 * max_lr, name, ha="center", rotation=90 if stop - start < 150 else 0, color="0.25")
    ax.axhline(max_lr, color="0.6", ls=":", lw=1)
    ax.axhline(min_lr, color="0.6", ls=":", lw=1)
    ax.set_xticks([warmup_steps, max_steps], [f"warmup_steps\n= {warmup_steps}", f"max_steps\n= {max_steps}"])
    ax.set_yticks([0, min_lr, max_lr], ["0", f"min_lr = {min_lr:g}", f"max_lr = {max_lr:g}"])
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.32), ncol=3, frameon=False)
    return fig


SHAPE_STEPS = 300


@functools.cache
def small_data_run() -> History:
    """TinyLM on only 512 training pairs, every step on all of them: the overfitting panel's run."""
    model = seeded(0, lambda: TinyLM(12, 2))
    return train(model, tokens(n_train=512, batch_size=None), AdamW(model.parameters(), 3e-3), steps=SHAPE_STEPS)


def curve_shape_runs() -> dict[str, History]:
    """One real run built to show each term of 'Reading curves', keyed by how it was built."""
    healthy_data = tokens()
    lm = lambda: seeded(0, lambda: TinyLM(12, 2))  # noqa: E731
    runs = {}
    model = lm()
    runs["TinyLM, AdamW lr 3e-3"] = train(model, healthy_data, AdamW(model.parameters(), 3e-3), steps=SHAPE_STEPS)
    runs["TinyLM on only 512 training pairs, AdamW lr 3e-3"] = small_data_run()
    model = seeded(0, lambda: MLP([2, 1]))
    runs["a linear model (no hidden layer) on the MLP's data, AdamW lr 1e-2"] = train(
        model, regression(), AdamW(model.parameters(), 1e-2), steps=SHAPE_STEPS
    )
    model = lm()
    runs["TinyLM, SGD lr 1e-3"] = train(model, healthy_data, SGD(model.parameters(), 1e-3), steps=SHAPE_STEPS)
    model = mlp()
    runs["the MLP, SGD lr 1"] = train(model, regression(), SGD(model.parameters(), 1.0), steps=SHAPE_STEPS)
    return runs


def shape_unit(name: str) -> str:
    """The loss unit of a curve-shape run, from its name: TinyLM runs are on tokens (nats), the others on regression."""
    return loss_unit(tokens() if name.startswith("TinyLM") else regression())


def curve_shapes_figure(runs: dict[str, History]) -> Figure:
    """Train and validation loss of each run in its own panel, titled with its diagnosis; a shared key."""
    fig, grid = plt.subplots(3, 2, figsize=(8, 9.6), layout="constrained")
    axes = list(grid.flat)
    for n, (ax, (name, history)) in enumerate(zip(axes, runs.items())):
        diverging = diagnose(history).label == "diverging"  # drawn as its label says, not by a rule of its own
        if diverging:
            plot_curve(ax, list(range(history.steps)), history.train_loss, 1e30, history.diverged_at,
                       color=STYLE["diverging"]["color"], lw=2, ls="-.")  # not colour alone
            ax.set_yscale("log")
            ax.set_ylim(1e-2, 1e32)
        else:
            ax.plot(history.eval_steps, history.eval_train_loss, color="#0072B2", lw=2.2)
            ax.plot(history.eval_steps, history.val_loss, color="#E69F00", lw=2.2, ls="--")
            ax.set_ylim(0, 1.25 * max(max(history.val_loss), max(history.eval_train_loss), history.baseline_loss))
        ax.axhline(history.baseline_loss, color="0.4", ls=":", lw=1.5)
        ax.set_title(f"{'ABCDE'[n]}: {label(history)}", fontweight="bold")
        ax.set_xlabel("step")
        ax.set_ylabel(f"loss ({shape_unit(name)}{', log' if diverging else ''})")
    key = axes[len(runs)]
    key.axis("off")
    key.plot([], [], color="#0072B2", lw=2.2, label="train (full split)")
    key.plot([], [], color="#E69F00", lw=2.2, ls="--", label="validation")
    key.plot([], [], color="0.4", ls=":", lw=1.5, label="predict-the-mean loss")
    key.plot([], [], color=STYLE["diverging"]["color"], lw=2, ls="-.", label="train (batch; x: inf or NaN)")
    key.legend(loc="center", frameon=False)
    return fig


def curve_shapes_caption(runs: dict[str, History]) -> str:
    """Which run each panel is and the label ``diagnose`` gives it (Markdown)."""
    panels = "; ".join(f"**{'ABCDE'[n]}** ({name}): **{label(h)}**" for n, (name, h) in enumerate(runs.items()))
    return (f"One real run of `g2c.training.train` per curve shape, each titled with its label from "
            f"`g2c.widgets.diagnose`: {panels}. The dotted line is the data's predict-the-mean loss, "
            f"the yardstick for \"high\"; panel E is on a log scale.")


def curve_shapes_alt(runs: dict[str, History]) -> str:
    """The five panels in words, from the same runs."""
    parts = []
    for n, (name, h) in enumerate(runs.items()):
        if diagnose(h).label == "diverging":
            steps = list(range(h.steps))
            words = curve_alt("training loss (per batch, log scale)", steps, h.train_loss, 1e30, None, h.diverged_at)
        else:
            words = (curve_words("training loss", h.eval_steps, h.eval_train_loss) + "; "
                     + curve_words("validation loss", h.eval_steps, h.val_loss))
        parts.append(f"{'ABCDE'[n]}, {name} ({label(h)}): {words}; predict-the-mean loss {h.baseline_loss:.3g}")
    return "Five panels of loss against step, each titled with its diagnosis, and a key. " + ". ".join(parts) + "."


def _panel(runs: dict[str, History], term: str) -> str:
    """The letter of the panel whose run ``diagnose`` gives ``term``."""
    return next("ABCDE"[n] for n, h in enumerate(runs.values()) if diagnose(h).label == term)


def curve_shapes_answer(runs: dict[str, History]) -> str:
    """The answer to 'which panel would a bigger model / a larger lr help?', from the panels' labels."""
    return (f"A bigger model would help panel **{_panel(runs, 'underfit')}** (underfit: it fell and levelled off near "
            f"the predict-the-mean loss, the most this model can do). A larger learning rate would help panel "
            f"**{_panel(runs, 'stalled')}** (stalled: it has hardly moved). A bigger model would not help that one: "
            f"it would take the same short steps.")


WARMUP_LRS, WARMUP_STEPS, WARMUP_EVAL, WARMUP_RUN_STEPS = (0.3, 1.0), 20, 5, 300


def warmup_schedule(warmup_steps: int, lr: float, steps: int) -> Callable[[int], float]:
    """A linear warmup to ``lr``, then ``lr`` held: ``cosine_with_warmup`` whose floor is its peak (no decay to blur it)."""
    return functools.partial(cosine_with_warmup, warmup_steps=warmup_steps, max_steps=steps, max_lr=lr, min_lr=lr)


@functools.cache
def warmup_runs() -> dict[float, dict[int, History]]:
    """AdamW on the MLP at high rates, without warmup and with ``WARMUP_STEPS`` of it: lr -> warmup steps -> History."""
    found: dict[float, dict[int, History]] = {}
    for lr in WARMUP_LRS:
        for warmup in (0, WARMUP_STEPS):
            found.setdefault(lr, {})[warmup] = _mlp_run(AdamW, lr, WARMUP_RUN_STEPS, eval_every=WARMUP_EVAL,
                                                        schedule=warmup_schedule(warmup, lr, WARMUP_RUN_STEPS))
    return found


def _run_words(h: History) -> str:
    """'the training loss peaks at 3.92; validation ends at 0.061 (healthy, 4 spikes)': a run's course in a few words."""
    end = f"is NaN from step {h.diverged_at}" if h.diverged else f"ends at {ended(h.val_loss):.3g}"
    return f"the training loss peaks at {max(h.eval_train_loss):.3g}; validation {end} (**{label(h)}**)"


def warmup_figure(runs: dict[float, dict[int, History]]) -> Figure:
    """Per high rate, the training loss without and with warmup (log), on shared axes."""
    fig, axes = plt.subplots(1, len(runs), figsize=(8, 5), layout="constrained", sharey=True)
    data = regression()
    histories = [h for by_w in runs.values() for h in by_w.values()]
    top = 2 * max(v for h in histories for v in h.eval_train_loss if math.isfinite(v))
    for ax, (lr, by_warmup) in zip(axes, runs.items()):
        for i, (warmup, h) in enumerate(by_warmup.items()):
            steps, values = counted_curve(h)
            name = f"{warmup} warmup steps" if warmup else "no warmup"
            plot_curve(ax, steps, values, top, h.diverged_at, color=RUN_COLORS[i], ls=RUN_STYLES[i], lw=2,
                       label=f"{name}: {label(h)}")
        reference_lines(ax, data, named=True)
        ax.set_yscale("log")
        ax.set_ylim(_bottom(histories, data), top)
        ax.set_xlabel("step")
        ax.set_title(f"AdamW, lr {lr:g}")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1, frameon=False)
    axes[0].set_ylabel(f"training loss ({loss_unit(data)}, log)")
    return fig


def warmup_caption(runs: dict[float, dict[int, History]]) -> str:
    parts = []
    for lr, by_warmup in runs.items():
        words = [f"{'no warmup' if w == 0 else f'{w} warmup steps'}: {_run_words(h)}" for w, h in by_warmup.items()]
        parts.append(f"at lr **{lr:g}**, " + "; ".join(words))
    return (f"AdamW on the MLP at two rates far above the ones its sweep in the optimizers chapter keeps, each without "
            f"warmup and with a linear warmup over "
            f"the first {WARMUP_STEPS} of {WARMUP_RUN_STEPS} steps (then the rate is held: no decay), from the same weights: "
            + "; ".join(parts) + f". Training loss on the full split every {WARMUP_EVAL} steps; {batch_words(regression())}.")


def warmup_alt(runs: dict[float, dict[int, History]]) -> str:
    histories = [h for by_w in runs.values() for h in by_w.values()]
    top = 2 * max(v for h in histories for v in h.eval_train_loss if math.isfinite(v))
    parts = []
    for lr, by_warmup in runs.items():
        for warmup, h in by_warmup.items():
            steps, values = counted_curve(h)
            parts.append(f"lr {lr:g}, {warmup} warmup steps ({label(h)}): "
                         + curve_alt("loss", steps, values, top, None, h.diverged_at))
    return ("Two log-scale panels of training loss (MSE) against step for AdamW at a high rate without and with warmup, "
            "with the predict-the-mean loss and the noise floor drawn. " + "; ".join(parts) + ".")


COSINE_LR, COSINE_MIN_LR, COSINE_STEPS = 0.03, 0.003, 300


@functools.cache
def cosine_runs() -> dict[str, History]:
    """TinyLM on ``tokens()`` (minibatches) with AdamW: the same peak rate held constant, and decayed along a cosine."""
    schedules = {
        f"constant lr {COSINE_LR:g}": warmup_schedule(0, COSINE_LR, COSINE_STEPS),
        f"cosine {COSINE_LR:g} to {COSINE_MIN_LR:g}": functools.partial(
            cosine_with_warmup, warmup_steps=0, max_steps=COSINE_STEPS, max_lr=COSINE_LR, min_lr=COSINE_MIN_LR),
    }
    found = {}
    for name, schedule in schedules.items():
        model = seeded(0, lambda: TinyLM(12, 2))
        found[name] = train(model, tokens(), AdamW(model.parameters(), COSINE_LR), steps=COSINE_STEPS, schedule=schedule)
    return found


def cosine_figure(runs: dict[str, History]) -> Figure:
    """Left: each run's learning rate per step. Right: its validation loss, beside the chain's entropy (the floor)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 4.8), layout="constrained")
    data = tokens()
    for i, (name, h) in enumerate(runs.items()):
        left.plot(range(h.steps), h.lr, color=RUN_COLORS[i], ls=RUN_STYLES[i], lw=2)
        right.plot(h.eval_steps, h.val_loss, color=RUN_COLORS[i], ls=RUN_STYLES[i], lw=2, label=f"{name}: {label(h)}")
    reference_lines(right, data, named=True)
    right.set_ylim(0.9 * data.floor, 1.1 * max(max(h.val_loss) for h in runs.values()))
    left.set_ylim(0, 1.1 * COSINE_LR)
    left.set_ylabel("learning rate")
    right.set_ylabel("validation loss (cross-entropy, nats)")
    for ax in (left, right):
        ax.set_xlabel("step")
    fig.legend(*right.get_legend_handles_labels(), loc="outside lower center", ncol=1, frameon=False)
    return fig


def cosine_caption(runs: dict[str, History]) -> str:
    data = tokens()
    ends = "; ".join(f"**{name}** ends at {final_loss(h):.3f} nats ({label(h)}), {final_loss(h) - data.floor:.3f} above "
                     f"the floor" for name, h in runs.items())
    return (f"TinyLM on `tokens()` with AdamW for {COSINE_STEPS} steps from the same weights, the peak rate held constant "
            f"or decayed along a cosine: {ends}. The floor is the chain's entropy, {data.floor:.3f} nats (the "
            f"predict-the-mean loss is {data.mean_loss():.2f}); {batch_words(data)}, so a constant rate keeps bouncing "
            f"on the minibatches' noise, and the decayed one settles.")


def cosine_alt(runs: dict[str, History]) -> str:
    data = tokens()
    parts = [f"{name} ({label(h)}): learning rate {h.lr[0]:.3g} at step 0 and {h.lr[-1]:.3g} at step {h.steps - 1}; "
             + curve_words("validation loss", h.eval_steps, h.val_loss) for name, h in runs.items()]
    return (f"Left, learning rate against step; right, validation loss in nats against step, with lines at the "
            f"predict-the-mean loss {data.mean_loss():.3g} and the noise floor {data.floor:.3g}. " + "; ".join(parts) + ".")


DECAYS, DECAY_LR = (0.0, 0.1, 1.0), 3e-3


def small_data() -> Dataset:
    """512 training pairs, every step on all of them: a TinyLM overfits them within a few hundred AdamW steps."""
    return tokens(n_train=512, batch_size=None)


@functools.cache
def decay_runs() -> dict[float, tuple[History, float]]:
    """The overfitting run (``small_data_run``'s) at each weight decay: lambda -> (History, final weight norm)."""
    found = {}
    for decay in DECAYS:
        model = seeded(0, lambda: TinyLM(12, 2))
        history = train(model, small_data(), AdamW(model.parameters(), DECAY_LR, weight_decay=decay), steps=SHAPE_STEPS)
        norm = float(torch.linalg.vector_norm(torch.cat([p.detach().flatten() for p in model.parameters()])))
        found[decay] = (history, norm)
    return found


def decay_figure(runs: dict[float, tuple[History, float]]) -> Figure:
    """Training (left) and validation (right) loss of the overfitting run at each weight decay."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 5), layout="constrained", sharey=True)
    data = small_data()
    for i, (decay, (h, _)) in enumerate(runs.items()):
        style = {"color": RUN_COLORS[i], "ls": RUN_STYLES[i], "lw": 2}
        left.plot(h.eval_steps, h.eval_train_loss, **style)
        right.plot(h.eval_steps, h.val_loss, label=f"weight decay {decay:g}: {label(h)}", **style)
    for ax, title in ((left, "training loss (full split)"), (right, "validation loss")):
        reference_lines(ax, data, named=True)
        ax.set_title(title)
        ax.set_xlabel("step")
    left.set_ylim(0, 1.1 * max(max(h.val_loss + h.eval_train_loss) for h, _ in runs.values()))
    left.set_ylabel("loss (cross-entropy, nats)")
    fig.legend(*right.get_legend_handles_labels(), loc="outside lower center", ncol=1, frameon=False)
    return fig


def decay_caption(runs: dict[float, tuple[History, float]]) -> str:
    data = small_data()
    parts = "; ".join(
        f"**λ {decay:g}**: validation ends at {ended(h.val_loss):.2f} and training at {ended(h.eval_train_loss):.2f} "
        f"nats ({label(h)}), weights of norm {norm:.1f}" for decay, (h, norm) in runs.items())
    return (f"TinyLM on only {len(data.train_x)} training pairs with AdamW at lr {DECAY_LR:g} for {SHAPE_STEPS} steps "
            f"({batch_words(data)}), from the same weights, at three decoupled weight decays λ: {parts}. The floor is the "
            f"chain's entropy on these validation pairs, {data.floor:.2f} nats; the predict-the-mean loss "
            f"{data.mean_loss():.2f}.")


def decay_alt(runs: dict[float, tuple[History, float]]) -> str:
    parts = [f"weight decay {decay:g} ({label(h)}): " + curve_words("training loss", h.eval_steps, h.eval_train_loss)
             + "; " + curve_words("validation loss", h.eval_steps, h.val_loss) for decay, (h, _) in runs.items()]
    data = small_data()
    return (f"Two panels of loss in nats against step, training left and validation right, with lines at the "
            f"predict-the-mean loss {data.mean_loss():.3g} and the noise floor {data.floor:.3g}. " + "; ".join(parts) + ".")


PATIENCE = 5  # evaluations without a new validation minimum before early stopping stops


def early_stop(history: History, patience: int = PATIENCE) -> tuple[int, int]:
    """(best, stop): the evaluation with the lowest validation loss so far when ``patience`` evaluations in a row
    brought no new minimum, and that evaluation (indices into ``eval_steps``)."""
    best = 0
    for i, value in enumerate(history.val_loss):
        if value < history.val_loss[best]:
            best = i
        if i - best >= patience:
            return best, i
    return best, len(history.val_loss) - 1


@functools.cache
def early_stopping_runs() -> tuple[History, History]:
    """The overfitting run, and the same run trained again only up to the step early stopping keeps: its weights are
    the kept ones (same seed, same batches), so its final validation loss is what early stopping delivers."""
    full = small_data_run()
    best, _ = early_stop(full)
    model = seeded(0, lambda: TinyLM(12, 2))
    kept = train(model, small_data(), AdamW(model.parameters(), 3e-3), steps=full.eval_steps[best])
    return full, kept


def early_stopping_figure(runs: tuple[History, History]) -> Figure:
    full, kept = runs
    best, stop = early_stop(full)
    fig, ax = plt.subplots(figsize=(8, 4.8), layout="constrained")
    ax.plot(full.eval_steps, full.eval_train_loss, color=RUN_COLORS[0], lw=2, label="training loss (full split)")
    ax.plot(full.eval_steps, full.val_loss, color=RUN_COLORS[1], lw=2, ls="--", label="validation loss")
    ax.plot([full.eval_steps[best]], [full.val_loss[best]], "o", ms=12, mfc="none", mec="black", mew=2,
            label=f"kept: step {full.eval_steps[best]}")
    ax.axvline(full.eval_steps[stop], color="0.3", ls="-.", lw=1.5, label=f"stopped: step {full.eval_steps[stop]}")
    reference_lines(ax, small_data(), named=True)
    ax.set_ylim(0, 1.1 * max(full.val_loss + full.eval_train_loss))
    ax.set_xlabel("step")
    ax.set_ylabel("loss (cross-entropy, nats)")
    ax.set_title(f"The overfitting run: {label(full)}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return fig


def early_stopping_caption(runs: tuple[History, History]) -> str:
    full, kept = runs
    best, stop = early_stop(full)
    return (f"Early stopping with a patience of {PATIENCE} evaluations ({PATIENCE * 10} steps) on the overfitting run "
            f"of Reading curves (panel B of its figure): validation bottoms out at {full.val_loss[best]:.3f} nats at step "
            f"{full.eval_steps[best]}, no lower in the {PATIENCE} evaluations after it, so training stops at step "
            f"{full.eval_steps[stop]} of {full.steps} and keeps the weights of step {full.eval_steps[best]}. Trained again "
            f"to step {kept.steps} only, the run ends with validation loss {kept.val_loss[-1]:.3f}: those are the kept "
            f"weights. Run to the end, it ends at {ended(full.val_loss):.3f} ({label(full)}).")


def early_stopping_alt(runs: tuple[History, History]) -> str:
    full, _ = runs
    best, stop = early_stop(full)
    return (f"Loss in nats against step for TinyLM on 512 training pairs: "
            f"{curve_words('training loss', full.eval_steps, full.eval_train_loss)}; "
            f"{curve_words('validation loss', full.eval_steps, full.val_loss)}; a circle marks the kept minimum at step "
            f"{full.eval_steps[best]} and a vertical line the stop at step {full.eval_steps[stop]}.")


def terms_markdown() -> str:
    """The five terms as a definition list, from ``g2c.widgets.diagnosis.TERMS`` (their one home)."""
    from g2c.widgets.diagnosis import TERMS

    return "\n\n".join(f"{t.name}: {t.seen}\n: *Test:* {t.test}.\n\n  *Next:* {t.action}" for t in TERMS.values())


def md(text: str):
    """Markdown output for ``glue``: captions and sentences written from the runs."""
    from IPython.display import Markdown

    return Markdown(text)

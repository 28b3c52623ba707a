"""Figures for the Module 03B book, drawn from real runs of ``g2c.training.train``.

Every chapter's hidden code cells call one function here, so the book has no training loop
of its own: the runs are the same ``train`` the students' notebook and widgets use.
Runs take well under a second each, so the whole book executes in seconds.
"""

from __future__ import annotations

import functools
import io
import math

import matplotlib

matplotlib.use("Agg")  # static PNGs; the book build has no display

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from g2c.data import regression, tokens
from g2c.nn import MLP, TinyLM, seeded
from g2c.training import SGD, AdamW, History, clip_grad_norm_, cosine_with_warmup, train
from g2c.widgets import STYLE, diagnose
from g2c.widgets.diagnosis import ended
from g2c.widgets.render import min_font_px
from g2c.widgets.runs import LR_GRID
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


def _plot_losses(ax: plt.Axes, history: History, top: float, **style) -> None:
    """Per-step train loss; a diverged run ends in a cross at the step whose loss was not finite, kept inside the axes."""
    steps = range(len(history.train_loss))
    (line,) = ax.plot(steps, history.train_loss, **style)
    if history.diverged:
        last = history.train_loss[-1] if history.train_loss else 1.0
        ax.plot([history.diverged_at], [min(last, top)], "x", color=line.get_color(), ms=11, mew=2.5, clip_on=False)


def lr_sweep_figure(runs: dict[float, History]) -> Figure:
    """Train loss for plain SGD at each learning rate; the legend names each run's diagnosis."""
    fig, ax = plt.subplots(figsize=(8, 4.6), layout="constrained")
    top = 3e2
    for i, (lr, history) in enumerate(runs.items()):
        _plot_losses(ax, history, top, color=RUN_COLORS[i % len(RUN_COLORS)], ls=RUN_STYLES[i % len(RUN_STYLES)], lw=2,
                     label=f"lr={lr:g}: {label(history)}")
    ax.set_yscale("log")
    ax.set_ylim(5e-3, 1e3)
    ax.set_xlabel("step")
    ax.set_ylabel("train loss (MSE, log scale)")
    ax.set_title("Plain SGD on the same MLP, one run per learning rate")
    fig.legend(loc="outside right center", frameon=False)  # beside the axes: it covers no curve
    return fig


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


@functools.cache
def race_runs() -> dict[str, dict[float, History]]:
    """The optimizer race's static runs (``optimizer_race(static=True)``'s settings): optimizer -> lr -> History."""
    from g2c.widgets.race import STATIC_LRS, default_optimizers
    from g2c.widgets.runs import Runs

    runner = Runs(None, None, None, steps=200)
    return {name: {lr: runner.run(lr, weight_decay=0.0, optimizer=factory, key=name) for lr in STATIC_LRS}
            for name, factory in default_optimizers().items()}


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
    return (f"An LR sweep on one model, each run named by `g2c.widgets.diagnose`: {parts[0]}. "
            f"A cross marks the step whose loss became NaN or inf. {pick}")


def show(fig: Figure):
    """The figure as a 2x PNG shown at its 100-dpi size (sharp on HiDPI screens; the Agg backend has no inline display)."""
    from IPython.display import Image

    width = round(fig.get_figwidth() * 100)
    return Image(png_bytes(fig), format="png", width=width)


def png_bytes(fig: Figure) -> bytes:
    """Render a figure to PNG bytes with the Agg backend and free it; the PNG records its smallest font (tEXt ``min-font-px``)."""
    buffer = io.BytesIO()
    dpi = plt.rcParams["savefig.dpi"]
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"min-font-px": f"{min_font_px(fig, dpi):.2f}"})
    plt.close(fig)
    return buffer.getvalue()


MATCHED_STEPS = 300


def matched_runs(steps: int = MATCHED_STEPS) -> dict[str, History]:
    """SGD and AdamW from the same initial weights, on the same data, for the same steps."""
    runs = {}
    for lr in (0.01, 0.1):
        model = mlp()
        runs[f"SGD lr {lr:g}"] = train(model, regression(), SGD(model.parameters(), lr), steps=steps)
    for lr in (1e-3, 1e-2):
        model = mlp()
        runs[f"AdamW lr {lr:g}"] = train(model, regression(), AdamW(model.parameters(), lr), steps=steps)
    return runs


def sgd_vs_adamw_figure(runs: dict[str, History]) -> Figure:
    """Validation loss of each matched run, one colour and line style each (SGD broken lines, AdamW solid ones);
    the legend names each diagnosis."""
    fig, ax = plt.subplots(figsize=(8, 4.4), layout="constrained")
    styles = {"SGD": iter(("--", ":")), "AdamW": iter(("-", "-."))}
    for (name, history), color in zip(runs.items(), RUN_COLORS):
        ax.plot(history.eval_steps, history.val_loss, color=color, lw=2.2, ls=next(styles[name.split()[0]]),
                label=f"{name}: {label(history)}")
    ax.axhline(runs[next(iter(runs))].baseline_loss, color="0.4", ls=":", lw=1.5, label="predict-the-mean loss")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss (MSE, log scale)")
    ax.set_title("Matched: same MLP, initial weights, data and steps")
    fig.legend(loc="outside right center", frameon=False)
    return fig


def sgd_vs_adamw_caption(runs: dict[str, History]) -> str:
    """The comparison's caption: each run's final validation loss and label, from the runs themselves."""
    ends = "; ".join(f"{name} ends at {h.val_loss[-1]:.3f} (**{label(h)}**)" for name, h in runs.items())
    best_sgd = min(h.val_loss[-1] for name, h in runs.items() if name.startswith("SGD"))
    best_adamw = min(h.val_loss[-1] for name, h in runs.items() if name.startswith("AdamW"))
    return (f"SGD (dashed, dotted) and AdamW (solid, dash-dot) on the same MLP, from the same initial weights, on the same data, "
            f"for {MATCHED_STEPS} steps: {ends}. AdamW's best run ends {best_sgd / best_adamw:.1f} times lower than SGD's.")


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


def curve_shapes_figure(runs: dict[str, History]) -> Figure:
    """Train and validation loss of each run in its own panel, titled with its diagnosis; a shared key."""
    fig, grid = plt.subplots(3, 2, figsize=(8, 9.6), layout="constrained")
    axes = list(grid.flat)
    for n, (ax, history) in enumerate(zip(axes, runs.values())):
        diverging = diagnose(history).label == "diverging"  # drawn as its label says, not by a rule of its own
        if diverging:
            _plot_losses(ax, history, 1e30, color=STYLE["diverging"]["color"], lw=2, ls="-.")  # not colour alone
            ax.set_yscale("log")
            ax.set_ylim(1e-2, 1e32)
        else:
            ax.plot(history.eval_steps, history.eval_train_loss, color="#0072B2", lw=2.2)
            ax.plot(history.eval_steps, history.val_loss, color="#E69F00", lw=2.2, ls="--")
            ax.set_ylim(0, 1.25 * max(max(history.val_loss), max(history.eval_train_loss), history.baseline_loss))
        ax.axhline(history.baseline_loss, color="0.4", ls=":", lw=1.5)
        ax.set_title(f"{'ABCDE'[n]}: {label(history)}", fontweight="bold")
        ax.set_xlabel("step")
        ax.set_ylabel("loss" + (" (log)" if diverging else ""))
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


def _panel(runs: dict[str, History], term: str) -> str:
    """The letter of the panel whose run ``diagnose`` gives ``term``."""
    return next("ABCDE"[n] for n, h in enumerate(runs.values()) if diagnose(h).label == term)


def curve_shapes_answer(runs: dict[str, History]) -> str:
    """The answer to 'which panel would a bigger model / a larger lr help?', from the panels' labels."""
    return (f"A bigger model would help panel **{_panel(runs, 'underfit')}** (underfit: it fell and levelled off near "
            f"the predict-the-mean loss, the most this model can do). A larger learning rate would help panel "
            f"**{_panel(runs, 'stalled')}** (stalled: it has hardly moved). A bigger model would not help that one: "
            f"it would take the same short steps.")


def terms_markdown() -> str:
    """The five terms as a definition list, from ``g2c.widgets.diagnosis.TERMS`` (their one home)."""
    from g2c.widgets.diagnosis import TERMS

    return "\n\n".join(f"{t.name}: {t.seen}\n: *Test:* {t.test}.\n\n  *Next:* {t.action}" for t in TERMS.values())


def md(text: str):
    """Markdown output for ``glue``: captions and sentences written from the runs."""
    from IPython.display import Markdown

    return Markdown(text)

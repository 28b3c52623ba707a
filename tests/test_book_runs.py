"""The book's run figures (issue 24) show what their text claims, and say it in numbers taken from the runs.

In-process checks (no book needed) rerun the figures' runs and test the claims the captions make
(a fair comparison picks each optimizer's best rate by the median-of-last-three rule; clipping
under AdamW mostly protects $v$; early stopping's kept weights are the minimum's); the built-book
checks (``make test-book``) parse each new figure's caption and alt text and compare every number
with a recomputation from the same runs, so a typed number or a stale picture fails.
"""

from __future__ import annotations

import html as htmllib
import math
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from g2c.data import regression, tokens
from g2c.widgets import diagnose
from g2c.widgets.diagnosis import count_spikes, ended

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html" / "book"
sys.path.insert(0, str(ROOT / "book"))
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import _figures as F  # noqa: E402

torch.set_num_threads(1)
needs_book = pytest.mark.skipif(os.environ.get("G2C_TEST_BOOK") != "1", reason="needs the built book: run `make test-book`")

# figure id -> (page, the function that writes its alt text from its runs, the runs)
NEW_FIGURES = {
    "fig-sgd-vs-adamw": ("optimizers.html", F.sgd_vs_adamw_alt, F.matched_runs),
    "fig-layer-scales": ("optimizers.html", F.layer_scales_alt, F.layer_scale_runs),
    "fig-clip-spike": ("clipping.html", F.spike_alt, F.spike_runs),
    "fig-warmup-runs": ("schedules.html", F.warmup_alt, F.warmup_runs),
    "fig-cosine-runs": ("schedules.html", F.cosine_alt, F.cosine_runs),
    "fig-weight-decay": ("regularization.html", F.decay_alt, F.decay_runs),
    "fig-early-stopping": ("regularization.html", F.early_stopping_alt, F.early_stopping_runs),
    "fig-lr-sweep": ("learning-rates.html", F.lr_sweep_alt, F.sweep_runs),
    "fig-curve-shapes": ("reading-curves.html", F.curve_shapes_alt, F.curve_shape_runs),
}


def text(fragment: str) -> str:
    return " ".join(htmllib.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def figure_html(page: str, figure: str) -> str:
    path = HTML / page
    assert path.exists(), f"no {path}: run `make book`"
    found = re.search(rf'<figure[^>]*id="{figure}"[^>]*>(.*?)</figure>', path.read_text(encoding="utf-8"), re.S)
    assert found, f"{figure}: no such figure in {page}"
    return found.group(1)


def caption(page: str, figure: str) -> str:
    return text(re.search(r"<figcaption>(.*?)</figcaption>", figure_html(page, figure), re.S).group(1))


# ---- the data's reference lines ------------------------------------------------------------------

def test_the_floor_is_the_noise_and_no_run_beats_it():
    """The dashed line is what the data allows: the noise variance of regression(), the chain's entropy of tokens()."""
    noiseless = regression(noise=0.0)
    assert regression().floor == pytest.approx(0.1**2)
    assert regression(noise=0.2).floor == pytest.approx(0.2**2)
    measured = float(((regression().val_y - noiseless.val_y) ** 2).mean())
    assert measured == pytest.approx(regression().floor, rel=0.15), "the floor is the noise the data really has"
    assert 0.5 < tokens().floor < tokens().mean_loss()
    assert tokens(sharpness=0.0).floor == pytest.approx(math.log(12), rel=1e-4), "a uniform chain's entropy is log(vocab)"
    best = min(ended(h.val_loss) for by_lr in F.optimizer_sweeps().values() for h in by_lr.values() if not h.diverged)
    assert best > 0.9 * regression().floor


# ---- the fair comparison --------------------------------------------------------------------------

def test_each_optimizer_runs_at_the_rate_that_ends_lowest_in_its_own_sweep():
    sweeps, runs = F.optimizer_sweeps(), F.matched_runs()
    assert set(sweeps) == {"SGD", "SGD momentum 0.9", "AdamW"}, "momentum SGD is in the comparison"
    for (name, by_lr), (run_name, history) in zip(sweeps.items(), runs.items()):
        ends = {lr: ended(h.val_loss) for lr, h in by_lr.items() if not h.diverged and diagnose(h).label != "diverging"}
        best = min(ends, key=ends.get)
        assert run_name == f"{name} lr {best:g}" and history is by_lr[best]
        assert F.final_loss(history) == float(np.median(history.val_loss[-3:])), "the median of the last three"


def test_a_run_that_ends_on_a_spike_ends_at_the_median_of_its_last_three():
    """The issue's Fig. 2.1 quoted plain SGD's last evaluation, a spike: the book's rule is the median of the last three."""
    from g2c.training import History

    spiky = History(eval_steps=[0, 10, 20, 30], eval_train_loss=[0.4, 0.2, 0.1, 0.1], val_loss=[0.4, 0.2, 0.1, 0.5],
                    baseline_loss=0.3)
    assert F.final_loss(spiky) == 0.2
    runs = F.matched_runs()
    words = F.sgd_vs_adamw_caption(runs)
    adamw = next(h for name, h in runs.items() if name.startswith("AdamW"))
    for name, h in runs.items():
        assert f"{name} ends at {ended(h.val_loss):.4f}" in words
    sgd = next(h for name, h in runs.items() if name.startswith("SGD lr"))
    assert f"{ended(sgd.val_loss) / ended(adamw.val_loss):.1f} times lower than SGD" in words


@needs_book
def test_the_built_comparison_caption_matches_a_recomputation():
    shown = caption("optimizers.html", "fig-sgd-vs-adamw")
    runs = F.matched_runs()
    ends = dict(re.findall(r"((?:SGD(?: momentum [\d.]+)?|AdamW) lr [\d.e-]+) ends at ([\d.]+) \(", shown))
    assert {name: float(value) for name, value in ends.items()} == {
        name: pytest.approx(ended(h.val_loss), abs=5e-5) for name, h in runs.items()
    }
    adamw = ended(next(h for name, h in runs.items() if name.startswith("AdamW")).val_loss)
    for name, h in runs.items():
        if not name.startswith("AdamW"):
            ratio = float(re.search(rf"([\d.]+) times lower than {re.escape(name.rsplit(' lr', 1)[0])}\b", shown).group(1))
            assert ratio == pytest.approx(ended(h.val_loss) / adamw, abs=0.051)
    assert f"noise floor (dashed) is {regression().floor:.4f}" in shown
    assert "full-batch" in shown


# ---- plotted curves are the ones diagnose counts ----------------------------------------------------

def test_the_sweep_plots_the_curve_whose_spikes_the_legend_counts():
    runs = F.sweep_runs()
    fig = F.lr_sweep_figure(runs)
    lines = [line for line in fig.axes[0].get_lines() if line.get_label().startswith("lr=")]
    assert len(lines) == len(runs)
    for line, h in zip(lines, runs.values()):
        assert list(line.get_ydata()) == h.eval_train_loss and list(line.get_xdata()) == h.eval_steps
        if not h.diverged:
            assert count_spikes(np.asarray(line.get_ydata()), h.baseline_loss) == diagnose(h).spikes
    assert any(diagnose(h).spikes > 1 for h in runs.values()), "a sweep with spikes to count"


def test_the_comparison_plots_validation_curves_with_the_spikes_the_legend_counts():
    """Its right panel plots validation loss; the caption says those curves share the counted spikes: they must."""
    for name, h in F.matched_runs().items():
        assert count_spikes(np.asarray(h.val_loss), h.baseline_loss) == diagnose(h).spikes, name


def test_a_run_that_leaves_the_plot_is_marked_where_it_leaves():
    runs = F.sweep_runs()
    fig = F.lr_sweep_figure(runs)
    top = fig.axes[0].get_ylim()[1]
    crosses = [line for line in fig.axes[0].get_lines() if line.get_marker() == "x"]
    leaving = [h for h in runs.values() if h.diverged or max(h.eval_train_loss) > top]
    assert len(crosses) == len(leaving) >= 1
    assert sorted(float(c.get_xdata()[0]) for c in crosses) == sorted(
        F.leaves_at(h.eval_steps, h.eval_train_loss, top, h.diverged_at) for h in leaving)
    for cross in crosses:  # on the top edge, or stacked just under it where several leave at one step
        assert top / 1.15 ** len(crosses) <= cross.get_ydata()[0] <= top
    kept = [v for h in runs.values() if diagnose(h).label != "diverging" for v in h.eval_train_loss]
    assert max(kept) < top, "every run that does not diverge is inside the plot"


# ---- clipping ------------------------------------------------------------------------------------

def test_clipping_saves_sgd_and_under_adamw_keeps_the_spike_out_of_v():
    runs = F.spike_runs()
    n = F.spike_numbers(runs)
    clip, every = f"clip {F.SPIKE_MAX_NORM:g}", f"clip {F.EVERY_STEP_MAX_NORM:g}"
    assert runs["SGD, spike"][0].diverged and not runs[f"SGD, spike, {clip}"][0].diverged
    fired = [i for i, c in enumerate(runs[f"SGD, spike, {clip}"][0].clipped) if c]
    assert fired and fired[0] == F.SPIKE_AT and len(fired) <= 3, "a guardrail fires at the spike, not on healthy steps"
    assert n["AdamW, spike: sqrt v after"] > 20 * n["AdamW, spike: sqrt v before"], "the spike pollutes v"
    assert n[f"AdamW, spike, {clip}: sqrt v after"] < n["AdamW, spike: sqrt v after"] / 10
    assert n["AdamW, spike: sqrt v end"] > 10 * n["AdamW, clean data: sqrt v end"], "and v remembers it"
    assert n[f"AdamW, spike, {every}: clip rate"] == 1.0
    clean = n["AdamW, clean data: end"]
    assert abs(n[f"AdamW, spike, {every}: end"] - clean) < 0.25 * clean, "clipping every step barely moves AdamW"
    assert n["AdamW, spike: end"] > 2 * clean


def test_adamw_is_invariant_to_a_constant_rescaling_of_the_gradient():
    """What the caption's "exactly for a constant one" rests on: scale the loss by 10 and AdamW takes the same steps
    (up to its epsilon, 1e-8: a scale small enough to bring gradients near it would show)."""
    from g2c.nn import seeded
    from g2c.nn.models import MLP
    from g2c.training import AdamW, train

    data = regression()
    scaled = type(data)(data.name, data.train_x, data.train_y, data.val_x, data.val_y,
                        lambda out, y: 10 * torch.nn.functional.mse_loss(out, y), data.batch_size, data.floor)
    ends = []
    for d in (data, scaled):
        model = seeded(0, lambda: MLP([2, 32, 32, 1]))
        train(model, d, AdamW(model.parameters(), 0.01), steps=50)
        ends.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.allclose(ends[0], ends[1], atol=1e-4)


# ---- schedules and regularization ------------------------------------------------------------------

def test_warmup_turns_a_diverging_rate_into_one_that_trains():
    runs = F.warmup_runs()
    top = max(runs)
    assert diagnose(runs[top][0]).label == "diverging" and diagnose(runs[top][F.WARMUP_STEPS]).label != "diverging"
    low = min(runs)
    assert ended(runs[low][F.WARMUP_STEPS].val_loss) < ended(runs[low][0].val_loss)
    assert runs[low][F.WARMUP_STEPS].lr[0] == 0.0 and runs[low][0].lr[0] == low


def test_cosine_ends_closer_to_the_floor_than_the_constant_rate():
    constant, cosine = F.cosine_runs().values()
    assert cosine.lr[-1] < constant.lr[-1] == constant.lr[0] == cosine.lr[0]
    assert tokens().floor < ended(cosine.val_loss) < ended(constant.val_loss)


def test_weight_decay_is_really_on_and_narrows_the_gap():
    runs = F.decay_runs()
    assert max(runs) > 0, "a run with weight decay"
    (h0, norm0), (h1, norm1) = runs[0.0], runs[max(runs)]
    assert norm1 < norm0, "decay shrinks the weights"
    assert ended(h1.val_loss) - ended(h1.eval_train_loss) < ended(h0.val_loss) - ended(h0.eval_train_loss)


def test_early_stopping_keeps_the_weights_of_the_validation_minimum():
    full, kept = F.early_stopping_runs()
    best, stop = F.early_stop(full)
    assert full.val_loss[best] == min(full.val_loss[: stop + 1])
    assert stop - best == F.PATIENCE and kept.steps == full.eval_steps[best]
    assert kept.val_loss[-1] == pytest.approx(full.val_loss[best], abs=1e-6), "the kept weights are the minimum's"
    assert ended(full.val_loss) > kept.val_loss[-1]


def test_early_stop_rule():
    class H:
        val_loss = [3.0, 2.0, 1.0, 1.5, 1.2, 1.1, 1.3, 0.9]

    assert F.early_stop(H(), patience=3) == (2, 5)
    assert F.early_stop(H(), patience=10) == (7, 7)


def test_per_layer_steps_are_uneven_under_sgd_and_evened_out_by_adamw():
    runs = F.layer_scale_runs()
    sgd, adamw = runs.values()
    assert F.layer_spread(sgd) > 2 * F.layer_spread(adamw)
    for name, values in sgd.update_rms.items():  # SGD's step is exactly lr times the gradient
        assert np.allclose(values, sgd.lr * np.asarray(sgd.grad_rms[name]), rtol=1e-3), name


# ---- alt text: from the PNG, equal to what the runs say -----------------------------------------------

def test_the_alt_text_travels_in_the_png(tmp_path):
    import matplotlib.pyplot as plt
    from figure_alt import png_alt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = tmp_path / "f.png"
    path.write_bytes(F.png_bytes(fig, "a line falling from 1 to 0"))
    assert png_alt(path) == "a line falling from 1 to 0"


@needs_book
@pytest.mark.parametrize("figure", list(NEW_FIGURES))
def test_each_figure_is_in_the_book_with_the_alt_text_its_runs_give(figure: str):
    page, alt, runs = NEW_FIGURES[figure]
    img = re.search(r'<img alt="([^"]*)"', figure_html(page, figure))
    assert img, f"{figure}: no image with alt text"
    assert htmllib.unescape(img.group(1)) == alt(runs())
    assert len(caption(page, figure)) > 80

"""The one classifier (``g2c.widgets.diagnose``) on real runs whose shape is known by construction.

Each term gets six or seven runs of ``g2c.training.train`` built to show it: a learning rate far
too high (diverging), one far too low (stalled), a tiny training set trained long, with or
without strong weight decay (overfitting), a model too small for the data (underfit), a
well-tuned run (healthy). Models, data, seeds and optimizers vary, so no single run decides a
threshold. About 6 s on one core. The classifier is a heuristic: its thresholds are named
constants (``THRESHOLDS``), the terms' tests are written from them, and every reason names the
clause that decided.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from g2c.data import regression, tokens
from g2c.nn import MLP, TinyLM, seeded
from g2c.training import SGD, AdamW, History, train
from g2c.widgets import KINDS, diagnose, example_curves
from g2c.widgets import diagnosis as D
from g2c.widgets.diagnosis import TERMS

# Real training runs (11 s): in the load beside the book (`make pytest-batch`), which had 30 s to spare
pytestmark = pytest.mark.batch


def run(build: Callable[[], torch.nn.Module], data, optimizer, lr: float, steps: int, seed: int = 0) -> History:
    model = seeded(seed, build)
    return train(model, data, optimizer(model.parameters(), lr=lr), steps=steps, eval_every=max(1, steps // 20), seed=seed)


def mlp(*sizes: int) -> Callable[[], MLP]:
    return lambda: MLP(list(sizes))


def lm(**kw: int) -> Callable[[], TinyLM]:
    return lambda: TinyLM(12, 2, **kw)


R, T = regression(), tokens()
R16, R32 = regression(n_train=16), regression(n_train=32, seed=1)
T512, T256 = tokens(n_train=512, batch_size=None), tokens(n_train=256, batch_size=None, seed=1)
MOMENTUM = functools.partial(SGD, momentum=0.9)

CASES: dict[str, list[tuple[str, Callable[[], History]]]] = {
    "diverging": [  # a learning rate far too high
        ("MLP, SGD lr 3", lambda: run(mlp(2, 32, 32, 1), R, SGD, 3.0, 200)),
        ("MLP, SGD lr 10, seed 1", lambda: run(mlp(2, 32, 32, 1), R, SGD, 10.0, 200, seed=1)),
        ("MLP, SGD momentum lr 1", lambda: run(mlp(2, 32, 32, 1), R, MOMENTUM, 1.0, 200)),
        ("one wide layer, SGD lr 3, seed 2", lambda: run(mlp(2, 64, 1), R, SGD, 3.0, 200, seed=2)),
        ("TinyLM, SGD lr 300", lambda: run(lm(), T, SGD, 300.0, 200)),
        ("MLP, AdamW lr 3", lambda: run(mlp(2, 32, 32, 1), R, AdamW, 3.0, 200)),
    ],
    "stalled": [  # a learning rate far too low
        ("MLP, SGD lr 1e-4", lambda: run(mlp(2, 32, 32, 1), R, SGD, 1e-4, 200)),
        ("MLP, SGD lr 1e-3, seed 1", lambda: run(mlp(2, 32, 32, 1), R, SGD, 1e-3, 200, seed=1)),
        ("TinyLM, SGD lr 1e-3", lambda: run(lm(), T, SGD, 1e-3, 300)),
        ("TinyLM, SGD lr 1e-2, seed 1", lambda: run(lm(), T, SGD, 1e-2, 300, seed=1)),
        ("MLP, AdamW lr 1e-5", lambda: run(mlp(2, 32, 32, 1), R, AdamW, 1e-5, 200)),
        ("TinyLM, AdamW lr 1e-5", lambda: run(lm(), T, AdamW, 1e-5, 300)),
    ],
    "overfitting": [  # a tiny training set trained long
        ("MLP 128x128 on 16 points, AdamW", lambda: run(mlp(2, 128, 128, 1), R16, AdamW, 1e-2, 600)),
        ("MLP 256x256 on 16 points, AdamW, seed 1", lambda: run(mlp(2, 256, 256, 1), R16, AdamW, 1e-2, 600, seed=1)),
        ("MLP 128x128 on 32 points, AdamW", lambda: run(mlp(2, 128, 128, 1), R32, AdamW, 1e-2, 600)),
        (
            "MLP 64x64x64 on 16 points, SGD momentum, seed 2",
            lambda: run(mlp(2, 64, 64, 64, 1), R16, MOMENTUM, 0.01, 1000, seed=2),
        ),
        ("TinyLM on 512 pairs, AdamW", lambda: run(lm(), T512, AdamW, 3e-3, 300)),
        ("TinyLM hidden 128 on 256 pairs, AdamW, seed 1", lambda: run(lm(hidden_dim=128), T256, AdamW, 1e-2, 300, seed=1)),
        (  # the book's panel B with strong decay: train low, validation high, validation barely turned up
            "TinyLM on 512 pairs, AdamW weight decay 1.0",
            lambda: run(lm(), T512, functools.partial(AdamW, weight_decay=1.0), 3e-3, 300),
        ),
    ],
    "underfit": [  # a model too small for the data, trained well
        ("linear 2->1, AdamW", lambda: run(mlp(2, 1), R, AdamW, 1e-2, 300)),
        ("one hidden unit, AdamW, seed 1", lambda: run(mlp(2, 1, 1), R, AdamW, 3e-2, 300, seed=1)),
        ("linear 2->1, SGD lr 0.3, seed 2", lambda: run(mlp(2, 1), R, SGD, 0.3, 300, seed=2)),
        ("TinyLM hidden 1, AdamW", lambda: run(lm(hidden_dim=1), T, AdamW, 1e-2, 300)),
        ("TinyLM hidden 2, AdamW, seed 1", lambda: run(lm(hidden_dim=2), T, AdamW, 1e-2, 300, seed=1)),
        ("TinyLM embed 1 hidden 1, AdamW, seed 2", lambda: run(lm(embed_dim=1, hidden_dim=1), T, AdamW, 3e-2, 300, seed=2)),
    ],
    "healthy": [  # well tuned
        ("MLP, AdamW lr 1e-2", lambda: run(mlp(2, 32, 32, 1), R, AdamW, 1e-2, 300)),
        ("MLP, AdamW lr 3e-3, seed 1", lambda: run(mlp(2, 32, 32, 1), R, AdamW, 3e-3, 300, seed=1)),
        ("MLP, SGD momentum lr 0.03", lambda: run(mlp(2, 32, 32, 1), R, MOMENTUM, 0.03, 300)),
        ("TinyLM, AdamW lr 3e-3", lambda: run(lm(), T, AdamW, 3e-3, 300)),
        ("TinyLM, AdamW lr 1e-2, seed 1", lambda: run(lm(), T, AdamW, 1e-2, 300, seed=1)),
        ("MLP 64x64, AdamW, seed 2", lambda: run(mlp(2, 64, 64, 1), R, AdamW, 1e-2, 300, seed=2)),
    ],
}


@pytest.fixture(scope="module")
def labelled() -> dict[str, list[tuple[str, History]]]:
    torch.set_num_threads(1)
    return {kind: [(name, make()) for name, make in cases] for kind, cases in CASES.items()}


def test_every_term_has_at_least_five_constructed_runs():
    assert set(CASES) == set(KINDS)
    assert all(len(cases) >= 5 for cases in CASES.values())


def test_classifier_names_real_runs_by_construction_at_95_percent(labelled):
    confusions = Counter((kind, diagnose(h).label) for kind, runs in labelled.items() for _, h in runs)
    total = sum(confusions.values())
    right = sum(n for (kind, label), n in confusions.items() if kind == label)
    assert right / total >= 0.95, confusions
    for kind in KINDS:  # no term is sacrificed for the average
        assert confusions[(kind, kind)] >= len(CASES[kind]) - 1, (kind, confusions)


def test_high_is_judged_against_the_predict_the_mean_loss(labelled):
    """A linear model falls from a bad start to the mean's loss: underfit, though its own start says healthy."""
    _, linear = labelled["underfit"][0]
    assert diagnose(linear).label == "underfit"
    assert linear.eval_train_loss[-1] < 0.5 * linear.eval_train_loss[0]  # judged against its start, it "learned"
    assert diagnose(linear.eval_train_loss, linear.val_loss).label == "healthy"  # which is why the start is not the yardstick


def test_the_headline_overfitting_runs_are_not_called_lr_too_high(labelled):
    """Large MLPs on 16 noisy points: train falls to ~0 while validation rises; tiny train wiggles are no spikes."""
    for _, h in labelled["overfitting"][:2]:
        d = diagnose(h)
        assert h.eval_train_loss[-1] < 1e-3 and d.label == "overfitting" and d.spikes == 0, (d, h.eval_train_loss[-5:])


def test_a_spike_the_run_recovers_from_is_counted_not_called_diverging():
    model = seeded(0, mlp(2, 32, 32, 1))
    h = train(model, R, MOMENTUM(model.parameters(), lr=0.1), steps=200, eval_every=10)
    assert max(h.eval_train_loss) > 1.5 * h.eval_train_loss[0]  # it did explode once ...
    d = diagnose(h)
    assert d.label == "healthy" and d.spikes >= 1 and h.val_loss[-1] < 0.1 * h.baseline_loss  # ... and ended among the best


def test_underfit_and_stalled_are_told_apart_by_whether_the_loss_levelled_off():
    """Same height, same data: a curve that fell and lies flat is underfit; one still creeping down is stalled."""
    levelled = np.array([2.0, 1.2, 1.0, 0.95, 0.94, 0.94, 0.94, 0.94, 0.94])
    creeping = np.linspace(1.2, 0.94, 9)
    assert diagnose(levelled, levelled, 1.0).label == "underfit"
    assert diagnose(creeping, creeping, 1.0).label == "stalled"
    assert diagnose(np.full(9, 1.0), np.full(9, 1.0), 1.0).label == "stalled"  # barely moved at all
    assert diagnose(levelled * 0.3, levelled * 0.3, 1.0).label == "healthy"  # the same shape, low: fine


def test_underfit_and_stalled_example_curves_look_different():
    rng = np.random.default_rng(11)
    for _ in range(50):
        under, _, base_u = example_curves("underfit", rng)
        stall, _, base_s = example_curves("stalled", rng)
        assert (under[0] - under[len(under) // 4]) / under[0] > 0.1  # falls early ...
        assert abs(under[-1] - under[-5]) / under[-1] < 0.02  # ... then lies flat
        assert (stall[0] - stall[-1]) / stall[0] < 0.12 and stall[-1] > 0.8 * base_s  # hardly moves, near the mean's loss


def test_history_records_the_datas_predict_the_mean_loss():
    model = seeded(0, mlp(2, 1))
    h = train(model, R, SGD(model.parameters(), lr=0.01), steps=3)
    assert h.baseline_loss == pytest.approx(R.mean_loss())


def test_mean_loss_is_the_loss_of_predicting_the_training_mean():
    guess = R.train_y.mean()
    assert R.mean_loss() == pytest.approx(float(((R.val_y - guess) ** 2).mean()), rel=1e-6)
    counts = torch.bincount(T.train_y, minlength=12).double() + 1
    frequencies = counts / counts.sum()
    assert T.mean_loss() == pytest.approx(float(-frequencies.log()[T.val_y].mean()), rel=1e-5)
    assert T.mean_loss() < float(torch.log(torch.tensor(12.0)))  # the frequencies beat a uniform guess


def test_a_constant_model_trained_to_convergence_reaches_the_mean_loss():
    """Independent of the formula above: a bias-only model can do no better than predict the mean."""
    bias = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([bias], lr=0.05)
    for _ in range(500):
        opt.zero_grad()
        F.mse_loss(bias.expand_as(R.train_y), R.train_y).backward()
        opt.step()
    assert F.mse_loss(bias.detach().expand_as(R.val_y), R.val_y).item() == pytest.approx(R.mean_loss(), rel=1e-3)


def test_every_term_is_defined_once_with_its_test_and_next_step():
    for name, term in TERMS.items():
        assert term.name == name and term.seen and term.test and term.action
    assert "bigger model" in TERMS["stalled"].action and "will not help" in TERMS["stalled"].action
    assert "capacity" in TERMS["underfit"].action


def clauses() -> dict[str, list[str]]:
    """Per label, the words of each clause that can decide it, written from the named thresholds."""
    pct = D._pct
    return {
        "diverging": ["inf or NaN", f"above {D.EXPLODE:g} times its start"],
        "overfitting": [
            f"more than {pct(D.VAL_RISE)}", f"more than {D.GAP_RATIO:g} times", f"below {pct(D.HIGH)}), and validation high",
        ],
        "underfit": [f"under {pct(D.LEVELLED)} and {pct(D.LEVELLED_END)}"],
        "stalled": [f"under {pct(D.FLAT)}: it barely moved", f"({pct(D.LEVELLED)} or more)", f"({pct(D.LEVELLED_END)} or more)"],
        "healthy": [f"(below {pct(D.HIGH)})"],
    }


def test_every_reason_names_the_clause_that_decided(labelled):
    for runs in labelled.values():
        for name, h in runs:
            d = diagnose(h)
            assert any(clause in d.reason for clause in clauses()[d.label]), (name, d.label, d.reason)


def test_the_terms_tests_are_written_from_the_named_thresholds():
    assert {name: value for name, (value, _) in D.THRESHOLDS.items()} == {name: getattr(D, name) for name in D.THRESHOLDS}
    tests = " ".join(t.test for t in TERMS.values())
    for name in ("EXPLODE", "HIGH", "VAL_RISE", "GAP_RATIO", "GAP_FLOOR", "FLAT", "LEVELLED", "LEVELLED_END"):
        value = getattr(D, name)
        assert f"{value:g} times" in tests or D._pct(value) in tests, f"{name} = {value} is not in the terms' tests"


def test_a_strongly_decayed_overfitting_run_is_not_told_to_raise_the_learning_rate(labelled):
    """Train low, validation high, the climb after the minimum too small to count: still overfitting, not stalled."""
    name, h = labelled["overfitting"][-1]
    d = diagnose(h)
    assert "weight decay 1.0" in name and d.label == "overfitting", d
    best = min(h.val_loss)
    assert h.val_loss[-1] - best < D.VAL_RISE * best  # the turn-up clause alone would not have caught it


def test_spikes_are_counted_on_the_curve_spike_curve_returns():
    model = seeded(0, mlp(2, 32, 32, 1))
    h = train(model, R, SGD(model.parameters(), lr=0.3), steps=200, eval_every=10)
    steps, losses = D.spike_curve(h)
    assert steps == h.eval_steps and losses == h.eval_train_loss
    marked = D.spike_steps(h)
    assert len(marked) == diagnose(h).spikes >= 2
    for step in marked:  # each marked step is a rise of the curve figures plot
        i = steps.index(step)
        assert losses[i] > (1 + D.SPIKE_JUMP) * losses[i - 1]


def test_the_curve_doctors_titles_do_not_give_the_answer_away():
    from g2c.widgets.doctor import example_notes, examples

    found = examples()
    words = ("lr", "SGD", "AdamW", "linear", "512", *KINDS)
    for title in found:
        assert not any(w.lower() in title.lower() for w in words), title
    notes = example_notes()
    assert list(notes) == list(found) and all(notes[t].startswith("This") for t in found)

"""g2c.training.train: what it records, divergence as a result, and the phenomena the data shows."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from g2c.data import regression, tokens
from g2c.nn import MLP, TinyLM, seeded
from g2c.training import SGD, AdamW, cosine_with_warmup, train


def mlp():
    return seeded(0, lambda: MLP([2, 32, 32, 1]))


def sgd_run(lr, steps=200):
    model = mlp()
    return train(model, regression(), SGD(model.parameters(), lr), steps=steps)


def test_history_records_every_step_and_every_eval():
    model = mlp()
    h = train(model, regression(), AdamW(model.parameters(), 1e-2), steps=25, eval_every=10)
    assert h.steps == 25 and len(h.lr) == len(h.grad_norm) == len(h.clipped) == 25
    assert h.eval_steps == [0, 10, 20, 25] and len(h.val_loss) == len(h.eval_train_loss) == 4
    assert not h.diverged and h.diverged_at is None
    assert all(n > 0 for n in h.grad_norm)


def test_the_seed_alone_decides_the_minibatches():
    """On minibatches (a full-batch run would pass with any seeding): the same seed gives the same
    run whatever the global RNG holds, another seed another run."""
    def run(seed: int):
        model = seeded(0, lambda: TinyLM(12, 2))
        return train(model, tokens(batch_size=32), SGD(model.parameters(), 0.1), steps=30, eval_every=10, seed=seed)

    torch.manual_seed(1)
    a = run(0)
    torch.manual_seed(2)
    b = run(0)
    assert a.train_loss == b.train_loss and a.val_loss == b.val_loss
    assert run(1).train_loss != a.train_loss


def test_schedule_sets_the_lr_of_g2c_and_torch_optimizers():
    schedule = functools.partial(cosine_with_warmup, warmup_steps=5, max_steps=20, max_lr=0.01, min_lr=0.001)
    for make in (lambda ps: AdamW(ps, 0.0), lambda ps: torch.optim.AdamW(ps, 0.0)):
        model = mlp()
        h = train(model, regression(), make(model.parameters()), steps=30, schedule=schedule)
        assert h.lr == pytest.approx([schedule(t) for t in range(30)])


def test_clipping_caps_the_update_and_is_recorded():
    model = mlp()
    h = train(model, regression(), SGD(model.parameters(), 0.1), steps=40, clip=0.05)
    assert h.clip_rate > 0.5, "with max_norm far below the gradient norm clipping should fire on most steps"
    assert all(c == (n > 0.05) for c, n in zip(h.clipped, h.grad_norm))
    unclipped = sgd_run(0.1, 40)
    assert unclipped.clip_rate == 0.0


def test_a_nan_loss_is_reported_as_divergence_not_raised():
    h = sgd_run(10.0)
    assert h.diverged and h.diverged_at == h.steps, "the run stops at the first non-finite loss"
    assert all(math.isfinite(v) for v in h.train_loss)


def test_lr_sweep_shows_crawl_learn_and_diverge():
    start = regression().evaluate(mlp())[1]
    crawl, learn, diverge = sgd_run(1e-3), sgd_run(0.1), sgd_run(3.0)
    assert crawl.val_loss[-1] > 0.8 * start, "lr=1e-3 should barely move the loss in 200 steps"
    assert learn.val_loss[-1] < 0.5 * start, "lr=0.1 should more than halve it"
    assert diverge.diverged, "lr=3 should blow up"


def test_small_training_set_overfits_and_the_default_does_not():
    def run(data):
        model = seeded(0, lambda: TinyLM(12, 2))
        return train(model, data, AdamW(model.parameters(), 3e-3), steps=300, eval_every=20)

    small = run(tokens(n_train=512, batch_size=None))
    best = min(small.val_loss)
    assert small.val_loss.index(best) < len(small.val_loss) // 2, "validation should bottom out early"
    assert small.val_loss[-1] > best + 0.3 and small.eval_train_loss[-1] < small.eval_train_loss[0] / 3
    healthy = run(tokens())
    assert healthy.val_loss[-1] == pytest.approx(min(healthy.val_loss), abs=0.05), "the default split should not overfit"


def test_bad_loop_arguments():
    model = mlp()
    opt = SGD(model.parameters(), 0.1)
    for kwargs, name in [
        ({"steps": -1}, "steps"),
        ({"steps": 5, "eval_every": 0}, "eval_every"),
        ({"steps": 5, "clip": 0}, "clip"),
    ]:
        with pytest.raises(ValueError, match=name):
            train(model, regression(), opt, **kwargs)

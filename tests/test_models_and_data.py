"""g2c.nn and g2c.data: shapes, seeding, and clear errors."""

from __future__ import annotations

import pytest
import torch

from g2c.data import regression, tokens
from g2c.nn import MLP, TinyLM, seeded


def test_seeded_models_start_identical_and_leave_the_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = seeded(0, lambda: MLP([2, 8, 1]))
    b = seeded(0, lambda: MLP([2, 8, 1]))
    c = seeded(1, lambda: MLP([2, 8, 1]))
    assert torch.equal(torch.rand(1), expected_next), "building a seeded model must not consume the global RNG"
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


def test_model_shapes():
    assert MLP([2, 16, 16, 1])(torch.zeros(5, 2)).shape == (5, 1)
    assert TinyLM(12, 2)(torch.zeros(7, 2, dtype=torch.long)).shape == (7, 12)
    with pytest.raises(ValueError, match=r"\(batch, 2\)"):
        TinyLM(12, 2)(torch.zeros(7, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="sizes"):
        MLP([2])
    with pytest.raises(ValueError, match="vocab_size"):
        TinyLM(0, 2)


@pytest.mark.parametrize("make", [lambda **kw: regression(**kw), lambda **kw: tokens(**kw)])
def test_datasets_are_seeded_and_split(make):
    a, b, c = make(seed=0), make(seed=0), make(seed=1)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.val_y, b.val_y)
    assert not torch.equal(a.train_x, c.train_x)
    assert len(a.train_x) == len(a.train_y) and len(a.val_x) == len(a.val_y) and len(a.val_x) > 0


def test_batches_are_repeatable_and_sized():
    data = tokens(batch_size=32)
    x1, y1 = data.batch(torch.Generator().manual_seed(5))
    x2, y2 = data.batch(torch.Generator().manual_seed(5))
    assert x1.shape == (32, 2) and torch.equal(x1, x2) and torch.equal(y1, y2)
    full = regression()
    x, _ = full.batch(torch.Generator())
    assert x is full.train_x, "batch_size=None trains on the whole split"


def test_token_targets_follow_the_chain_not_noise():
    data = tokens(n_train=8192, sharpness=3.0)
    # the most frequent next token after each context is far more common than chance (1/12)
    index = data.train_x[:, 0] * 12 + data.train_x[:, 1]
    counts = torch.zeros(144, 12)
    counts.index_put_((index, data.train_y), torch.ones(len(index)), accumulate=True)
    top_share = counts.max(1).values.sum() / counts.sum()
    assert top_share > 0.4


def test_bad_dataset_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="n_train"):
        regression(n_train=0)
    with pytest.raises(ValueError, match="noise"):
        regression(noise=-1)
    with pytest.raises(ValueError, match="sharpness"):
        tokens(sharpness=-1)

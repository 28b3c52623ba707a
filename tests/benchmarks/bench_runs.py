"""Time one exercise run of each kind on one thread: the budget is 2 s per run.

Each run is the same call the notebook, figures and widgets make: ``g2c.training.train``.
"""

from __future__ import annotations

import time

import torch

from g2c.data import regression, tokens
from g2c.nn import MLP, TinyLM, seeded
from g2c.training import SGD, AdamW, train

BUDGET_SECONDS = 2.0


def mlp_run(make_optimizer):
    model = seeded(0, lambda: MLP([2, 32, 32, 1]))
    return train(model, regression(), make_optimizer(model.parameters()), steps=200)


def lm_run(data):
    model = seeded(0, lambda: TinyLM(12, 2))
    return train(model, data, AdamW(model.parameters(), 3e-3), steps=300, eval_every=20)


RUNS = {
    "lr sweep point (MLP, SGD, 200 steps)": lambda: mlp_run(lambda ps: SGD(ps, 0.1)),
    "optimizer race point (MLP, AdamW, 200 steps)": lambda: mlp_run(lambda ps: AdamW(ps, 1e-2)),
    "healthy LM (TinyLM, 300 steps, batch 256)": lambda: lm_run(tokens()),
    "overfitting LM (TinyLM, 300 steps, 512 examples)": lambda: lm_run(tokens(n_train=512, batch_size=None)),
}


def main() -> None:
    torch.set_num_threads(1)
    for name, run in RUNS.items():
        run()  # warm up
        start = time.perf_counter()
        run()
        seconds = time.perf_counter() - start
        print(f"{name:50s} {seconds:6.3f} s  ({seconds / BUDGET_SECONDS:.2f} of the 2 s budget)")


if __name__ == "__main__":
    main()

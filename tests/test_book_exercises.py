"""Every chapter of the first part ends with a summary and 2-4 exercises whose answers open on
demand, and every numeric answer the book prints is what ``g2c`` computes.

The answers are read from the chapters' sources (``book/*.md``): an answer is a dropdown
admonition named ``answer-<chapter>-<n>``; a numeric one states its number in bold first. Each
numeric answer has a function here that computes it with ``g2c`` (not with the formula the answer
quotes), so a wrong number in the book, or a ``g2c`` that changed, fails.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from g2c.data import regression
from g2c.nn import MLP, seeded
from g2c.training import SGD, AdamW, clip_grad_norm_, cosine_with_warmup, train

BOOK = Path(__file__).resolve().parents[1] / "book"
FIRST_PART = ("learning-rates", "optimizers", "clipping", "schedules", "reading-curves", "regularization", "concepts")
ANSWER = re.compile(r":::\{admonition\} Answer\n\s*:class: dropdown\n\s*:name: (answer-[\w-]+)\n(.*?):::", re.S)
BOLD_NUMBER = re.compile(r"\*\*([-+]?\d[\d.]*(?:e[-+]?\d+)?)\*\*")


def scalar(value: float) -> torch.Tensor:
    return torch.tensor([value], requires_grad=True)


def sgd_step_length() -> float:
    p = torch.zeros(2, requires_grad=True)
    p.grad = torch.tensor([1.5, 2.0])
    SGD([p], lr=0.1).step()
    return float(p.detach().norm())


def first_adamw_theta() -> float:
    p = scalar(1.0)
    p.grad = torch.tensor([0.5])
    AdamW([p], lr=0.01, weight_decay=0.1).step()
    return float(p.detach())


def uncorrected_over_corrected() -> float:
    """The first step without bias correction (from the optimizer's own m and v) over the real one."""
    p = scalar(1.0)
    p.grad = torch.tensor([0.5])
    opt = AdamW([p], lr=0.01)
    opt.step()
    corrected = 1.0 - float(p.detach())
    uncorrected = opt.lr * float(opt.m[0]) / (math.sqrt(float(opt.v[0])) + opt.eps)
    return uncorrected / corrected


def global_norm() -> float:
    params = [torch.zeros(2, requires_grad=True), torch.zeros(1, requires_grad=True)]
    params[0].grad, params[1].grad = torch.tensor([3.0, 4.0]), torch.tensor([12.0])
    return float(clip_grad_norm_(params, 1.0))


def spike_half_life() -> float:
    """Steps until a spike's share of AdamW's v has halved (zero gradients after it)."""
    p = scalar(0.0)
    opt = AdamW([p], lr=1e-3)
    p.grad = torch.tensor([10.0])
    opt.step()
    peak, steps = float(opt.v[0]), 0
    p.grad = torch.tensor([0.0])
    while float(opt.v[0]) > peak / 2:
        opt.step()
        steps += 1
    return steps


def schedule_at(step: int) -> float:
    return cosine_with_warmup(step, warmup_steps=100, max_steps=1000, max_lr=3e-3, min_lr=3e-4)


def schedule_landmarks() -> tuple[int, int]:
    """The first step at max_lr, and the first step from which the rate stays at min_lr (checked to 1200)."""
    lrs = [schedule_at(t) for t in range(1200)]
    peak = next(t for t, lr in enumerate(lrs) if lr == 3e-3)
    floor = next(t for t in range(len(lrs)) if all(lr == 3e-4 for lr in lrs[t:]))
    return peak, floor


def early_stop_step() -> int:
    """The step of the lowest validation loss of the overfitting panel's run (TinyLM on 512 pairs)."""
    import sys

    sys.path.insert(0, str(BOOK))
    import _figures

    history = _figures.small_data_run()
    return history.eval_steps[min(range(len(history.val_loss)), key=history.val_loss.__getitem__)]


def decay_left() -> float:
    p = scalar(1.0)
    opt = AdamW([p], lr=1e-3, weight_decay=0.1)
    for _ in range(1000):
        p.grad = torch.zeros(1)
        opt.step()
    return float(p.detach())


def first_steps() -> tuple[float, float]:
    big, tiny = scalar(0.0), scalar(0.0)
    big.grad, tiny.grad = torch.tensor([1e3]), torch.tensor([1e-6])
    AdamW([big, tiny], lr=1e-3).step()
    return abs(float(big.detach())), abs(float(tiny.detach()))


# answer name -> the numbers it states in bold, in order, computed with g2c
ANSWERS: dict[str, Callable[[], tuple[float, ...]]] = {
    "answer-learning-rates-1": lambda: (sgd_step_length(),),
    "answer-optimizers-1": lambda: (first_adamw_theta(),),
    "answer-optimizers-2": lambda: (uncorrected_over_corrected(),),
    "answer-clipping-1": lambda: (global_norm(),),
    "answer-clipping-2": lambda: (spike_half_life(),),
    "answer-schedules-1": lambda: (schedule_at(550),),
    "answer-schedules-2": lambda: (schedule_at(1),),
    "answer-schedules-3": schedule_landmarks,
    "answer-reading-curves-1": lambda: (regression().mean_loss(),),
    "answer-regularization-1": lambda: (decay_left(),),
    "answer-regularization-2": lambda: (early_stop_step(),),
    "answer-concepts-1": first_steps,
}


def answers() -> dict[str, str]:
    found = {}
    for name in FIRST_PART:
        for label, body in ANSWER.findall((BOOK / f"{name}.md").read_text(encoding="utf-8")):
            assert label not in found, f"{label} twice"
            found[label] = body
    return found


def agrees(shown: str, value: float) -> bool:
    """``shown`` is ``value`` rounded to the digits shown (within half a unit of the last one)."""
    digits = len(shown.split(".")[1]) if "." in shown else 0
    return abs(float(shown) - value) <= 0.5 * 10 ** -digits + 1e-12


@pytest.mark.parametrize("chapter", FIRST_PART)
def test_each_first_part_chapter_ends_with_a_summary_and_two_to_four_exercises(chapter):
    text = (BOOK / f"{chapter}.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings[-1] == "Exercises", f"{chapter}: the chapter must end with its exercises, has {headings}"
    summary = "Concepts to internalize" if chapter == "concepts" else "Summary"
    assert summary in headings, f"{chapter}: no {summary} section"
    exercises = text[text.rindex("## Exercises"):]
    questions = re.findall(r"^\d+\. \*\*(Compute|Read the figure|Read the widget|Justify a choice)\.\*\*", exercises, re.M)
    opened = re.findall(r":::\{admonition\} Answer\n\s*:class: dropdown", exercises)
    assert 2 <= len(questions) <= 4 and len(opened) == len(questions), (chapter, questions, len(opened))


def test_the_exercises_mix_numbers_figures_and_choices():
    kinds = set()
    for chapter in FIRST_PART:
        text = (BOOK / f"{chapter}.md").read_text(encoding="utf-8")
        kinds |= set(re.findall(r"^\d+\. \*\*(Compute|Read the figure|Read the widget|Justify a choice)\.\*\*", text, re.M))
    assert {"Compute", "Read the figure", "Justify a choice"} <= kinds


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_numeric_answer_is_what_g2c_computes(name):
    body = answers()[name]
    expected = ANSWERS[name]()
    shown = BOLD_NUMBER.findall(body)[: len(expected)]
    assert len(shown) == len(expected), f"{name}: expected {len(expected)} bold numbers, found {shown}"
    for text, value in zip(shown, expected):
        assert agrees(text, value), f"{name}: the book says {text}, g2c computes {value:.6g}"


def test_every_numeric_answer_is_checked():
    """An answer that states a bold number but has no g2c computation here would go unchecked."""
    numeric = {name for name, body in answers().items() if BOLD_NUMBER.search(body)}
    assert numeric == set(ANSWERS)


def test_the_clipping_widget_reading_holds():
    """Exercise 3 of 'Norms and gradient clipping' reads the widget: most steps clipped at 0.5, few at 1."""
    def rate(max_norm: float) -> float:
        model = seeded(0, lambda: MLP([2, 32, 32, 1]))
        return train(model, regression(), SGD(model.parameters(), lr=0.3), steps=200, clip=max_norm).clip_rate

    assert rate(0.5) > 0.9 and rate(1.0) < 0.1


def test_agrees_rejects_a_wrong_digit():
    assert agrees("0.989", 0.98900002) and agrees("693", 693) and agrees("0.00099", 0.000990099)
    assert not agrees("0.988", 0.98900002) and not agrees("0.25", 0.2501 + 0.02) and not agrees("0.001", 0.0015001)

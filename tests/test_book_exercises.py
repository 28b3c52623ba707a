"""Every chapter of the first part ends with a summary and 2-6 exercises whose answers open on
demand, at least one a derivation and one a small experiment, and every number an answer prints
is what ``g2c`` computes.

The answers are read from the chapters' sources (``book/*.md``): an answer is a dropdown
admonition named ``answer-<chapter>-<n>``; a numeric one states its number in bold first. Each
numeric answer has a function here that computes it with ``g2c`` (not with the formula the answer
quotes), so a wrong number in the book, or a ``g2c`` that changed, fails. An experiment's answer
prints numbers the build computed (``book/_claims.py``, glued): those functions are checked here
against torch's own optimizers or a closed form, and the built page against the closed forms.
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
KINDS = r"(Compute|Read the figure|Read the widget|Justify a choice|Derive|Experiment)"
QUESTION = re.compile(r"^\d+\. \*\*" + KINDS + r"\.\*\*", re.M)
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


def quadratic_limit() -> float:
    """The largest lr (to 1e-4) at which g2c's SGD shrinks both coordinates of ½(θ₁² + 4θ₂²) over 200 steps."""
    def converges(lr: float) -> bool:
        p = torch.ones(2, requires_grad=True)
        opt = SGD([p], lr=lr)
        for _ in range(200):
            p.grad = torch.tensor([1.0, 4.0]) * p.detach()
            opt.step()
        return bool((p.detach().abs() < 1).all())

    low, high = 0.0, 2.0  # converges at low, not at high: bisect to 1e-4
    while high - low > 1e-4:
        mid = (low + high) / 2
        low, high = (mid, high) if converges(mid) else (low, mid)
    return low


def first_step_within_one_percent(beta_index: int) -> int:
    """The first step from which g2c's AdamW's m (beta_index 0) or v (1), fed a constant gradient of 1, is within 1 % of it."""
    p = scalar(0.0)
    opt = AdamW([p], lr=0.0)
    t = 0
    while True:
        p.grad = torch.tensor([1.0])
        opt.step()
        t += 1
        if float((opt.m, opt.v)[beta_index][0]) > 0.99:
            return t


def cosine_phase_mean() -> float:
    lrs = [schedule_at(t) for t in range(100, 1000)]
    return sum(lrs) / len(lrs)


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
    "answer-learning-rates-4": lambda: (quadratic_limit(),),
    "answer-optimizers-5": lambda: (first_step_within_one_percent(0), first_step_within_one_percent(1)),
    "answer-schedules-5": lambda: (cosine_phase_mean(),),
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
    questions = QUESTION.findall(exercises)
    opened = re.findall(r":::\{admonition\} Answer\n\s*:class: dropdown", exercises)
    assert 2 <= len(questions) <= 6 and len(opened) == len(questions), (chapter, questions, len(opened))


@pytest.mark.parametrize("chapter", FIRST_PART)
def test_each_first_part_chapter_asks_for_a_derivation_and_an_experiment(chapter):
    exercises = (BOOK / f"{chapter}.md").read_text(encoding="utf-8").split("## Exercises")[-1]
    kinds = QUESTION.findall(exercises)
    assert "Derive" in kinds and "Experiment" in kinds, (chapter, kinds)


def test_experiment_answers_print_what_the_build_measured():
    """An experiment's answer states its results through glue (computed from a run when the book is built), never typed."""
    experiments = 0
    for chapter in FIRST_PART:
        exercises = (BOOK / f"{chapter}.md").read_text(encoding="utf-8").split("## Exercises")[-1]
        for number, kind in re.findall(r"^(\d+)\. \*\*" + KINDS + r"\.\*\*", exercises, re.M):
            if kind == "Experiment":
                experiments += 1
                body = answers()[f"answer-{chapter}-{number}"]
                assert "{glue:" in body or "{glue:md}" in body, f"{chapter} {number}: the results are not glued"
                assert not BOLD_NUMBER.search(body), f"{chapter} {number}: a typed result"
    assert experiments >= len(FIRST_PART)


def test_the_exercises_mix_numbers_figures_and_choices():
    kinds = set()
    for chapter in FIRST_PART:
        kinds |= set(QUESTION.findall((BOOK / f"{chapter}.md").read_text(encoding="utf-8")))
    assert {"Compute", "Read the figure", "Justify a choice", "Derive", "Experiment"} <= kinds


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


# ---- the build's own measurements (book/_claims.py), against torch and closed forms -----------------

def claims():
    import sys

    sys.path.insert(0, str(BOOK))
    import _claims

    return _claims


def torch_adam_step_over_lr(mean: float, sd: float, steps: int = 1500, burn_in: int = 300) -> float:
    g = torch.Generator().manual_seed(7)
    p = torch.zeros(200, requires_grad=True)
    opt = torch.optim.Adam([p], lr=1e-3, foreach=False)
    total = 0.0
    for t in range(steps):
        before = p.detach().clone()
        p.grad = mean + sd * torch.randn(200, generator=g)
        opt.step()
        if t >= burn_in:
            total += float((p.detach() - before).abs().mean()) / 1e-3
    return total / (steps - burn_in)


@pytest.mark.parametrize("case", [(1.0, 0.0), (1.0, 1.0), (0.01, 1.0)])
def test_adams_step_measures_consistency_as_torch_does(case):
    """1.00, 0.71, 0.18 η: g2c's simulated AdamW step against torch's Adam on other draws (3 %)."""
    assert claims().adam_steps()[case] == pytest.approx(torch_adam_step_over_lr(*case), rel=0.03)


def test_one_spikes_step_is_torchs_and_the_bound():
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([p], lr=1e-3, foreach=False)
    for _ in range(10_000):
        p.grad = torch.tensor([0.01])
        opt.step()
    last = float(p.detach())
    p.grad = torch.tensor([1e6])
    opt.step()
    assert claims().spike_step_over_lr() == pytest.approx(abs(float(p.detach()) - last) / 1e-3, rel=1e-3)
    assert claims().spike_bound() == pytest.approx(0.1 / math.sqrt(0.001))


def test_momentums_gain_is_torchs():
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=1e-3, momentum=0.9)
    for _ in range(200):
        before = float(p.detach())
        p.grad = torch.tensor([1.0])
        opt.step()
    assert claims().momentum_gain() == pytest.approx((before - float(p.detach())) / 1e-3, rel=1e-5)


def test_l2_and_decoupled_decay_agree_for_sgd_and_not_for_adam():
    assert claims().l2_equals_decay() < 1e-5
    p, q = torch.ones(3, requires_grad=True), torch.ones(3, requires_grad=True)
    grad = torch.tensor([1e-3, 1.0, 1e3])
    p.grad, q.grad = grad + 0.1 * p.detach(), grad.clone()
    torch.optim.Adam([p], lr=0.1).step()  # L2 penalty through m and v
    torch.optim.AdamW([q], lr=0.1, weight_decay=0.1).step()
    assert (p.detach() - q.detach()).abs().max() > 1e-3  # the claim's other half: under Adam they differ


def test_quadratic_and_bias_claims_match_their_closed_forms():
    c = claims()
    assert c.quadratic_end(0.49) == pytest.approx(abs(1 - 0.49 * 4) ** 50, rel=1e-4)
    assert c.quadratic_end(0.51) == pytest.approx(abs(1 - 0.51 * 4) ** 50, rel=1e-4)
    assert c.bias_factor(5) == pytest.approx(1 - 0.9**5, rel=0.02)
    assert c.scale_invariance() < 1e-5


def test_the_floors_are_the_datas_noise():
    from g2c.data import tokens

    c = claims()
    assert c.regression_floor() == pytest.approx(0.1**2)
    data = tokens()
    probs, contexts, index = c.markov_probs()
    assert torch.equal(contexts, data.val_x)  # the chain read back is the one that drew the data
    assert 0 < c.tokens_floor() < data.mean_loss()


@pytest.mark.skipif(__import__("os").environ.get("G2C_TEST_BOOK") != "1", reason="needs the built book: run `make test-book`")
@pytest.mark.parametrize("name, shown", [
    ("learning-rates.html#answer-learning-rates-5", (f"{0.96 ** 50:.2f}", f"{1.04 ** 50:.1f}")),
    ("clipping.html#answer-clipping-4", (f"{0.1 / math.sqrt(0.001):.2f}",)),
    ("concepts.html#answer-concepts-3", (f"{1 / (1 - 0.9):.2f}",)),
])
def test_the_built_answers_print_the_closed_forms(name, shown):
    page, anchor = name.split("#")
    html = (BOOK.parent / "_build" / "html" / "book" / page).read_text(encoding="utf-8")
    start = html.index(f'id="{anchor}"')
    body = re.sub(r"<[^>]+>", " ", html[start:html.index("</details>", start)] if "</details>" in html[start:]
                  else html[start:start + 4000])
    for number in shown:
        assert number in body, f"{anchor}: {number} not shown"

"""Module 03B contract tests: AdamW, clip_grad_norm_ and cosine_with_warmup.

The first seven tests check what you receive already written (signatures, argument
checks, zero_grad); the other fourteen check the parts you write. Every failure message
names the pitfall it caught.

The implementation under test is ``g2c.training`` unless ``G2C_TRAINING_MODULE`` names
another module; the student kit's ``conftest.py`` points it at the notebook's answer cells.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os

import pytest
import torch

impl = importlib.import_module(os.environ.get("G2C_TRAINING_MODULE", "g2c.training"))
AdamW = impl.AdamW
clip_grad_norm_ = impl.clip_grad_norm_
cosine_with_warmup = impl.cosine_with_warmup

SHAPES = [(4, 3), (3,), (2, 2, 2), (1,)]
ADAMW_SETTINGS = [
    dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0),
    dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
    dict(lr=1e-1, betas=(0.0, 0.5), eps=1e-3, weight_decay=0.01),
]


def make_params(seed: int = 0, dtype: torch.dtype = torch.float64) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=dtype).requires_grad_() for shape in SHAPES]


def twins(params: list[torch.Tensor]) -> list[torch.Tensor]:
    return [p.detach().clone().requires_grad_() for p in params]


def differs(actual: torch.Tensor, expected: torch.Tensor, rtol: float, atol: float) -> str | None:
    """None if close, else where and by how much, in words: "element 2 is 0.5, expected 0.25 (off by 0.25)"."""
    actual, expected = actual.detach().to(torch.float64), expected.detach().to(torch.float64)
    if actual.shape != expected.shape:
        return f"its shape is {tuple(actual.shape)}, expected {tuple(expected.shape)}"
    gap = (actual - expected).abs()
    bad = ~(gap <= atol + rtol * expected.abs())  # NaN counts as far
    if not bad.any():
        return None
    worst = int(torch.where(bad, gap.nan_to_num(float("inf")), torch.zeros_like(gap)).flatten().argmax())
    a, e = actual.flatten()[worst].item(), expected.flatten()[worst].item()
    return f"element {worst} is {a:.10g}, expected {e:.10g} (off by {abs(a - e):.3g})"


def assert_close_in_words(actual: torch.Tensor, expected: torch.Tensor, rtol: float, atol: float, why: str) -> None:
    """Fail with ``why`` first (the pitfall in words), then what differed."""
    gap = differs(actual, expected, rtol, atol)
    assert gap is None, f"{why}: {gap}"


def race_pitfall(settings: dict, step: int) -> str:
    """The likely pitfall when AdamW parts from torch at ``step`` (the settings without weight decay come first)."""
    if step > 1:
        return ("the first step agrees, a later one does not: keep m and v per parameter from step to step, "
                "count t once per step() (not per parameter), and read the learning rate from self.lr on every step")
    if settings["weight_decay"]:
        return ("the first step differs only with weight decay: decay the parameter itself, p -= lr * weight_decay * p, "
                "not the gradient (AdamW's decay is decoupled)")
    return ("the first step differs: divide m by 1 - beta1**t and v by 1 - beta2**t (t = 1 on the first step), "
            "then add eps after the square root")


def race_torch(settings: dict, steps: int, dtype: torch.dtype, rtol: float, atol: float, seed: int = 0) -> None:
    """Run our AdamW and torch.optim.AdamW side by side on the same random gradients, the learning rate
    set before every step as a schedule does in the training loop; stop at the first step that differs."""
    ours = make_params(seed, dtype)
    theirs = twins(ours)
    still = make_params(seed, dtype)  # one step, then lr = 0: the second step must leave these where they are
    frozen = AdamW(still, **settings)
    for lr in (settings["lr"], 0.0):
        for p in still:
            p.grad = torch.ones_like(p)
        frozen.lr = lr
        before = [p.detach().clone() for p in still]
        frozen.step()
    assert all(torch.equal(p, q) for p, q in zip(still, before)), (
        "step() ignores a learning rate set after construction (optimizer.lr = 0 still moved the parameters): read self.lr "
        "on every step, since the training loop sets it from the schedule before each step"
    )
    opt = AdamW((p for p in ours), **settings)  # params may be a generator
    ref = torch.optim.AdamW(theirs, foreach=False, **settings)
    g = torch.Generator().manual_seed(seed + 1)
    named = ", ".join(f"{k}={v}" for k, v in settings.items())
    for step in range(1, steps + 1):
        grads = []
        for p, q in zip(ours, theirs):
            scale = 10.0 ** torch.randint(-3, 3, (1,), generator=g).item()  # mixed gradient scales
            grad = scale * torch.randn(p.shape, generator=g, dtype=dtype)
            p.grad, q.grad = grad.clone(), grad.clone()
            grads.append(grad)
        opt.lr = settings["lr"] * (0.5 + 0.5 * math.cos(step))  # as the loop does: optimizer.lr = cosine_with_warmup(...)
        for group in ref.param_groups:
            group["lr"] = opt.lr
        opt.step()
        ref.step()
        for i, (p, grad) in enumerate(zip(ours, grads)):
            assert torch.equal(p.grad, grad), (
                f"step() changed p.grad in place (parameter {i}, step {step}): read the gradient, never write to it "
                "(no grad.mul_(...)); clipping or logging after the step would see other numbers"
            )
        for i, (p, q) in enumerate(zip(ours, theirs)):
            assert p.dtype == q.dtype, f"parameter {i} changed dtype from {q.dtype} to {p.dtype}"
            gap = differs(p, q, rtol, atol)
            assert gap is None, (f"{race_pitfall(settings, step)}\n"
                                 f"AdamW({named}) in {dtype}, its lr set before each step, parts from torch.optim.AdamW "
                                 f"at step {step}, parameter {i}: {gap}")


# ---------------------------------------------------------------- given: passes from the start


def test_public_names_and_signatures():
    init = inspect.signature(AdamW.__init__).parameters
    assert list(init)[:3] == ["self", "params", "lr"], "AdamW(params, lr, *, ...) is the contract"
    for name, default in [("betas", (0.9, 0.999)), ("eps", 1e-8), ("weight_decay", 0.0)]:
        assert init[name].kind is inspect.Parameter.KEYWORD_ONLY, f"AdamW's {name} must be keyword-only"
        assert init[name].default == default, f"AdamW's {name} must default to {default}"
    for method in ("zero_grad", "step"):
        assert callable(getattr(AdamW, method, None)), f"AdamW needs a {method}() method"
    clip = inspect.signature(clip_grad_norm_).parameters
    assert list(clip)[:2] == ["parameters", "max_norm"], "clip_grad_norm_(parameters, max_norm, *, eps=1e-6)"
    assert clip["eps"].kind is inspect.Parameter.KEYWORD_ONLY and clip["eps"].default == 1e-6
    sched = inspect.signature(cosine_with_warmup).parameters
    assert list(sched)[0] == "step"
    for name in ("warmup_steps", "max_steps", "max_lr", "min_lr"):
        assert sched[name].kind is inspect.Parameter.KEYWORD_ONLY, f"cosine_with_warmup's {name} must be keyword-only"
    assert sched["min_lr"].default == 0.0


def test_adamw_rejects_negative_lr():
    for lr in (-1e-3, float("nan")):
        with pytest.raises(ValueError, match="lr"):
            AdamW(make_params(), lr)


def test_adamw_rejects_betas_outside_unit_interval():
    for betas in [(1.0, 0.999), (0.9, 1.0), (-0.1, 0.999), (0.9, 1.5)]:
        with pytest.raises(ValueError, match="betas"):
            AdamW(make_params(), 1e-3, betas=betas)


def test_adamw_rejects_negative_eps_and_weight_decay():
    with pytest.raises(ValueError, match="eps"):
        AdamW(make_params(), 1e-3, eps=-1e-8)
    with pytest.raises(ValueError, match="weight_decay"):
        AdamW(make_params(), 1e-3, weight_decay=-0.01)


def test_zero_grad_clears_every_gradient_even_from_a_generator():
    params = make_params()
    opt = AdamW((p for p in params), 1e-3)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.zero_grad()
    for i, p in enumerate(params):
        assert p.grad is None or not p.grad.any(), f"parameter {i} still has a gradient after zero_grad()"


def test_schedule_rejects_bad_arguments():
    ok = dict(warmup_steps=10, max_steps=100, max_lr=1e-3, min_lr=1e-4)
    with pytest.raises(ValueError, match="step"):
        cosine_with_warmup(-1, **ok)
    with pytest.raises(ValueError, match="warmup_steps"):
        cosine_with_warmup(0, **{**ok, "warmup_steps": 101})
    with pytest.raises(ValueError, match="min_lr"):
        cosine_with_warmup(0, **{**ok, "min_lr": 1e-2})


def test_clip_rejects_negative_max_norm():
    params = make_params()
    for p in params:
        p.grad = torch.ones_like(p)
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm_(params, -1.0)
    assert all(bool((p.grad == 1).all()) for p in params), "a rejected call must leave the gradients alone"


# ---------------------------------------------------------------- AdamW.step: yours to write


def test_adamw_first_step_by_hand():
    # Step 1: m_hat = g and v_hat = g^2 exactly, so the update is lr * g / (|g| + eps).
    p = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
    grad = torch.tensor([0.1, -3.0, 1e-4], dtype=torch.float64)
    opt = AdamW([p], lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    p.grad = grad.clone()
    with torch.no_grad():  # a missing torch.no_grad() is its own test's pitfall
        opt.step()
    expected = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) - 0.01 * grad / (grad.abs() + 1e-8)
    assert_close_in_words(
        p, expected, 1e-12, 1e-12,
        "the first update should move each element by about lr: bias correction is missing or wrong "
        "(divide m by 1 - beta1**t and v by 1 - beta2**t, with t = 1 on the first step, and add eps after)",
    )


def test_adamw_matches_torch_float64_over_many_steps():
    for settings in ADAMW_SETTINGS:
        race_torch(settings, steps=60, dtype=torch.float64, rtol=1e-9, atol=1e-12)


def test_adamw_matches_torch_float32_over_many_steps():
    for settings in ADAMW_SETTINGS:
        race_torch(settings, steps=60, dtype=torch.float32, rtol=1e-4, atol=1e-5)


def test_adamw_weight_decay_is_decoupled():
    # With a zero gradient, AdamW only shrinks the parameter: p <- p * (1 - lr * weight_decay).
    p = torch.tensor([2.0, -4.0], dtype=torch.float64, requires_grad=True)
    opt = AdamW([p], lr=0.1, weight_decay=0.5)
    for _ in range(3):
        p.grad = torch.zeros_like(p)
        with torch.no_grad():  # a missing torch.no_grad() is its own test's pitfall
            opt.step()
    expected = torch.tensor([2.0, -4.0], dtype=torch.float64) * (1 - 0.1 * 0.5) ** 3
    assert_close_in_words(
        p, expected, 1e-12, 1e-12,
        "with a zero gradient after 3 steps, AdamW must only have shrunk p by (1 - lr * weight_decay)**3: weight decay "
        "is decoupled, p *= 1 - lr * weight_decay, not folded into the gradient (Adam + L2) nor missing",
    )


def first_move(opt_steps_without_grad: int) -> float:
    """How far one element moves on its first gradient (1.0), after ``opt_steps_without_grad`` optimizer steps without any."""
    p = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = AdamW([p], lr=0.01)
    with torch.no_grad():
        for _ in range(opt_steps_without_grad):
            p.grad = None
            opt.step()
        p.grad = torch.ones_like(p)
        opt.step()
    return -p.item()


def test_adamw_step_counter_advances_once_per_step():
    params = [torch.zeros(2, dtype=torch.float64, requires_grad=True) for _ in range(4)]
    opt = AdamW(params, lr=0.01)
    for step in range(1, 3):
        for p in params:
            p.grad = torch.ones_like(p)
        with torch.no_grad():  # a missing torch.no_grad() is its own test's pitfall
            opt.step()
        moved = [-p[0].item() for p in params]
        # The same gradients at the same steps must move every parameter alike, wherever it sits in the list.
        assert max(moved) - min(moved) <= 1e-12 * max(abs(m) for m in moved), (
            f"after step {step} four parameters with the same gradients moved by {[f'{m:.6g}' for m in moved]}: "
            "the step counter must advance once per optimizer step, not once per parameter"
        )
    # The counter counts optimizer steps, also those in which a parameter had no gradient. Only bias
    # correction shows the count; when it is missing (test_adamw_first_step_by_hand) this part cannot judge.
    if math.isclose(first_move(0), 0.01, rel_tol=1e-6):
        late = first_move(1)
        bias_corrected_at_2 = 0.01 * (0.1 / (1 - 0.9**2)) / (math.sqrt(0.001 / (1 - 0.999**2)) + 1e-8)
        assert math.isclose(late, bias_corrected_at_2, rel_tol=1e-5), (  # eps placement is its own test's pitfall
            f"a gradient first seen at the optimizer's step 2 moved the parameter by {late:.6g}, "
            f"expected {bias_corrected_at_2:.6g}: "
            "bias correction must use the optimizer's step count (one counter for the whole optimizer), "
            "not the number of gradients that parameter has seen"
        )


def test_adamw_update_is_not_recorded_by_autograd():
    params = make_params()
    opt = AdamW(params, lr=1e-2)
    loss = sum((p**2).sum() for p in params)
    loss.backward()
    try:
        opt.step()
    except NotImplementedError:
        raise
    except RuntimeError as err:
        pytest.fail(f"step() let the update enter autograd (wrap it in torch.no_grad()): {err}")
    for i, p in enumerate(params):
        assert p.is_leaf and p.grad_fn is None and p.requires_grad, (
            f"parameter {i} is no longer a trainable leaf: the update was recorded by autograd (use torch.no_grad())"
        )


def test_adamw_leaves_parameters_without_grad_untouched():
    params = make_params()
    frozen = params[1]
    before = frozen.detach().clone()
    opt = AdamW(params, lr=0.1, weight_decay=0.1)
    for _ in range(3):
        for p in params:
            p.grad = None if p is frozen else torch.ones_like(p)
        with torch.no_grad():  # a missing torch.no_grad() is its own test's pitfall
            opt.step()
    assert frozen.grad is None, "step() gave a gradient to a parameter whose .grad is None: leave it None"
    gap = differs(frozen, before, 0, 0)
    assert gap is None, f"parameter 1, whose .grad is None, moved ({gap}): skip it entirely, weight decay included"
    assert not torch.equal(params[0].detach(), make_params()[0].detach()), "parameters with gradients must move"


# ---------------------------------------------------------------- clip_grad_norm_: yours to write


def with_grads(seed: int = 0, scale: float = 3.0) -> list[torch.Tensor]:
    params = make_params(seed)
    g = torch.Generator().manual_seed(seed + 7)
    for p in params:
        p.grad = scale * torch.randn(p.shape, generator=g, dtype=p.dtype)
    return params


def test_clip_matches_torch_norm_and_grads():
    for max_norm in (0.5, 2.0, 1e6):
        for given in ("a list", "a generator"):
            ours = with_grads()
            theirs = twins(ours)
            for p, q in zip(ours, theirs):
                q.grad = p.grad.clone()
            total = clip_grad_norm_(list(ours) if given == "a list" else (p for p in ours), max_norm)
            expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm)
            assert isinstance(total, torch.Tensor), (
                f"clip_grad_norm_ returned a {type(total).__name__}: return the norm as a tensor, as torch does "
                "(no float() or .item())"
            )
            assert math.isclose(float(total), float(expected), rel_tol=1e-6), (
                f"clipping to max_norm={max_norm} returned {float(total):.10g}: return the global norm measured before clipping, "
                f"{float(expected):.10g}"
            )
            for i, (p, q) in enumerate(zip(ours, theirs)):
                assert_close_in_words(
                    p.grad, q.grad, 1e-6, 1e-15, f"clipping {given} to max_norm={max_norm}, gradient {i} differs from torch's"
                    + (" (a generator is empty once walked: walk the parameters once)" if given == "a generator" else "")
                )


def test_clip_is_global_not_per_parameter():
    params = with_grads()
    before = torch.cat([p.grad.flatten() for p in params])
    clip_grad_norm_(params, 1.0)
    after = torch.cat([p.grad.flatten() for p in params])
    cosine = torch.nn.functional.cosine_similarity(before, after, dim=0).item()
    assert cosine > 1 - 1e-12, (
        "clipping changed the direction of the whole gradient: clip globally with one shared scale, "
        f"not each parameter on its own (cosine between the gradient before and after: {cosine:.6f}, must be 1)"
    )
    assert math.isclose(after.norm().item(), 1.0, rel_tol=1e-5), (
        f"the clipped global norm is {after.norm().item()}, not max_norm=1"
    )


def test_clip_leaves_small_gradients_untouched():
    params = with_grads(scale=1e-3)
    before = [p.grad.clone() for p in params]
    total = clip_grad_norm_(params, 1.0)
    assert float(total) < 1.0
    for i, (p, b) in enumerate(zip(params, before)):
        gap = differs(p.grad, b, 0, 0)
        assert gap is None, (
            f"gradient {i} changed although the global norm {float(total):.3g} is below max_norm = 1: scale only when "
            f"max_norm / (total + eps) < 1 ({gap})"
        )


def test_clip_skips_params_without_grad_and_uses_eps():
    params = with_grads()[:2]  # one gradient and one None: per-parameter clipping would agree here (its own test)
    params[1].grad = None
    before = params[0].grad.clone()
    total = float(before.norm())
    try:
        clip_grad_norm_(params, 1.0, eps=0.5)
    except (TypeError, AttributeError) as err:
        if "None" not in str(err):
            raise
        pytest.fail(f"clip_grad_norm_ failed on a parameter whose .grad is None ({err}): skip those parameters")
    assert params[1].grad is None, "a parameter without a gradient must keep .grad None"
    scale = 1.0 / (total + 0.5)  # max_norm / (total + eps)
    assert_close_in_words(
        params[0].grad, before * scale, 1e-12, 1e-15,
        f"with max_norm=1 and eps=0.5 the gradient must be scaled by max_norm / (total + eps) = {scale:.6g}, "
        "the eps you are given",
    )


# ---------------------------------------------------------------- cosine_with_warmup: yours to write

SCHEDULE = dict(warmup_steps=10, max_steps=110, max_lr=1.0, min_lr=0.1)


def test_schedule_warmup_is_linear_from_zero():
    values = [cosine_with_warmup(t, **SCHEDULE) for t in range(10)]
    expected = [t / 10 for t in range(10)]
    assert values == pytest.approx(expected, rel=1e-12, abs=1e-12), (
        f"warmup must rise linearly from 0 at step 0, lr = max_lr * step / warmup_steps: steps 0-3 gave {values[:4]}, "
        f"expected {expected[:4]}"
    )


def test_schedule_cosine_matches_closed_form():
    for t in range(10, 110):  # from the peak up to max_steps (the floor has its own test)
        progress = (t - 10) / 100
        expected = 0.1 + 0.5 * (1 + math.cos(math.pi * progress)) * (1.0 - 0.1)
        got = cosine_with_warmup(t, **SCHEDULE)
        assert got == pytest.approx(expected, rel=1e-12), (
            "the decay must follow min_lr + 0.5 * (1 + cos(pi * progress)) * (max_lr - min_lr) with progress = "
            f"(step - warmup_steps) / (max_steps - warmup_steps): step {t} gave {got:.10g}, expected {expected:.10g}"
        )
    assert cosine_with_warmup(10, **SCHEDULE) == pytest.approx(1.0), "the peak max_lr is reached at step == warmup_steps"
    assert cosine_with_warmup(60, **SCHEDULE) == pytest.approx(0.55), "halfway through the decay lr is (max_lr + min_lr) / 2"


def test_schedule_holds_min_lr_after_max_steps():
    for t in (110, 111, 150, 210, 10_000):
        got = cosine_with_warmup(t, **SCHEDULE)
        assert got == pytest.approx(0.1, rel=1e-12), (
            f"from max_steps on the lr must stay at min_lr = 0.1: step {t} gave {got:.10g}"
        )
    assert cosine_with_warmup(5, warmup_steps=0, max_steps=0, max_lr=1.0) == 0.0, "with max_steps=0 every step is past the end"

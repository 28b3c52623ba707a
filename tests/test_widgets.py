"""g2c.widgets, headless: controls change the picture, the doctor's labels, bad input, static mode.

No timing here (see tests/benchmarks/bench_widgets.py). Widgets are built once per module.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections import Counter

import ipywidgets
import numpy as np
import pytest
import torch
from ipywidgets.embed import embed_data
from matplotlib.figure import Figure

from g2c.data import regression
from g2c.nn import MLP, seeded
from g2c.training import SGD, AdamW, train
from g2c.widgets import (
    KINDS,
    Panel,
    Picture,
    clipping_demo,
    curve_doctor,
    diagnose,
    example_curves,
    frame_switcher,
    lr_sweep,
    optimizer_race,
    schedule_explorer,
)
from g2c.widgets.clipping import ClippingFigure, clip_example
from g2c.widgets.runs import Runs
from g2c.widgets.sweep import best_smooth_lr

PNG = b"\x89PNG\r\n\x1a\n"


def shown(image: Picture) -> bytes:
    """The PNG a Picture shows, read back from the HTML a browser gets (not from the ``png`` trait)."""
    src = re.search(r'src="data:image/png;base64,([^"]+)"', image.value)
    assert src, f"no PNG in {image.value[:80]!r}"
    return base64.b64decode(src.group(1))


def alt(image: Picture) -> str:
    """The alt text a screen reader gets for a Picture, read from its HTML."""
    found = re.search(r'<img [^>]*alt="([^"]*)"', image.value)
    assert found, f"no alt attribute in {image.value[:80]!r}"
    return html.unescape(found.group(1))
FACTORIES = {
    "lr_sweep": lr_sweep,
    "optimizer_race": optimizer_race,
    "clipping_demo": clipping_demo,
    "schedule_explorer": schedule_explorer,
    "curve_doctor": curve_doctor,
}


@pytest.fixture(scope="module")
def live() -> dict[str, Panel]:
    return {name: factory() for name, factory in FACTORIES.items()}


@pytest.fixture(scope="module")
def static() -> dict[str, Panel]:
    return {name: factory(static=True) for name, factory in FACTORIES.items()}


def move(control: ipywidgets.Widget) -> None:
    """Move a control to another valid setting, as a user would."""
    if isinstance(control, ipywidgets.SelectionSlider):
        control.index = (control.index + 2) % len(control.options)
    elif isinstance(control, ipywidgets.Dropdown):
        control.index = (control.index + 1) % len(control.options)
    elif isinstance(control, ipywidgets.FloatLogSlider):
        control.value = control.value / 3  # keeps min_lr <= max_lr for min_lr, smaller peak for max_lr
    elif isinstance(control, ipywidgets.IntSlider):
        control.value = control.value + 200
    else:
        raise AssertionError(f"no rule to move {type(control).__name__}")


# (widget, control) for every control of every no-argument live widget
CONTROLS = [
    ("lr_sweep", "lr"),
    *[("optimizer_race", f"{o} {k}") for o in ("SGD", "SGD momentum 0.9", "AdamW") for k in ("lr", "weight_decay")],
    ("clipping_demo", "max_norm"),
    ("clipping_demo", "lr"),
    ("schedule_explorer", "warmup_steps"),
    ("schedule_explorer", "max_steps"),
    ("schedule_explorer", "max_lr"),
    ("schedule_explorer", "min_lr"),
    ("curve_doctor", "curve"),
]


def test_every_factory_builds_with_no_arguments(live):
    for name, panel in live.items():
        assert isinstance(panel, ipywidgets.VBox), name
        assert panel.image is not None and shown(panel.image).startswith(PNG), name
        assert "could not start" not in panel.readout.value, (name, panel.readout.value)
    assert {name for name, _ in CONTROLS} == set(live), "every widget has its controls listed"
    for name, panel in live.items():
        assert set(panel.controls) == {c for n, c in CONTROLS if n == name}, name


@pytest.mark.parametrize(("name", "control"), CONTROLS)
def test_moving_a_control_changes_the_picture(live, name, control):
    panel = live[name]
    before_image, before_alt, before_text = shown(panel.image), alt(panel.image), panel.readout.value
    move(panel.controls[control])
    assert shown(panel.image).startswith(PNG)
    assert shown(panel.image) != before_image, f"{name}: moving {control} left the picture unchanged"
    assert alt(panel.image) != before_alt, f"{name}: moving {control} left the alt text unchanged: {before_alt!r}"
    assert "could not" not in panel.readout.value and panel.readout.value != "", panel.readout.value
    if name != "schedule_explorer":  # there the text can legitimately stay for some settings
        assert panel.readout.value != before_text or control.endswith("weight_decay")


def test_lr_sweep_readout_names_the_selected_lr_and_the_largest_smooth_lr():
    panel = lr_sweep(lr=1.0)
    assert "lr 1: diverging" in panel.readout.value
    assert "Largest lr that still trains smoothly: <b>0.1</b>" in panel.readout.value
    panel.controls["lr"].value = "0.001"
    assert "lr 0.001: stalled" in panel.readout.value


def test_quiz_new_curve_redraws_and_check_grades_exactly_one_answer_right():
    quiz = curve_doctor(quiz=True, seed=3)
    first = shown(quiz.image)
    quiz.controls["new"].click()
    assert shown(quiz.image) != first
    verdicts = []
    for kind in KINDS:
        quiz.controls["answer"].value = kind
        quiz.controls["check"].click()
        verdicts.append(quiz.readout.value)
    assert sum("Right" in v for v in verdicts) == 1, verdicts
    assert sum("Not quite" in v for v in verdicts) == len(KINDS) - 1


# ---- the doctor ---------------------------------------------------------------------------

def test_curve_doctor_labels_at_least_95_percent_of_generated_curves():
    rng = np.random.default_rng(2024)  # not a seed the thresholds were tuned on
    confusions = Counter()
    n = 600
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        label = diagnose(*example_curves(kind, rng)).label
        confusions[(kind, label)] += 1
    right = sum(count for (kind, label), count in confusions.items() if kind == label)
    assert right / n >= 0.95, confusions
    for kind in KINDS:  # no shape is sacrificed for the average
        assert confusions[(kind, kind)] / (n / len(KINDS)) >= 0.9, (kind, confusions)


def test_curve_doctor_labels_the_lr_sweeps_own_runs():
    """The foundation's facts: plain SGD on regression stalls at 1e-3, trains at 0.1, diverges at >= 1."""
    runs = Runs(None, None, None, steps=200)
    lrs = (1e-3, 0.1, 0.3, 1.0, 3.0)
    histories = [runs.run(lr) for lr in lrs]
    assert [diagnose(h).label for h in histories] == ["stalled", "healthy", "healthy", "diverging", "diverging"]
    assert diagnose(histories[2]).spikes > 1 and not diagnose(histories[2]).smooth  # 0.3 trains, but spikes
    assert best_smooth_lr(lrs, histories) == 0.1


def test_diagnose_names_an_overfitting_run_and_accepts_arrays_like_a_history():
    from g2c.data import tokens
    from g2c.nn import TinyLM

    model = seeded(0, lambda: TinyLM(12, 2))
    history = train(model, tokens(n_train=512, batch_size=None), AdamW(model.parameters(), lr=3e-3), steps=300, eval_every=15)
    assert diagnose(history).label == "overfitting"
    assert diagnose(history.eval_train_loss, history.val_loss, history.baseline_loss) == diagnose(history)
    panel = curve_doctor(history)
    assert "overfitting" in panel.readout.value and "Next:" in panel.readout.value
    assert (
        curve_doctor(history.eval_train_loss, history.val_loss, baseline=history.baseline_loss).readout.value
        == panel.readout.value
    )


def test_diagnose_reads_shapes_not_scales():
    rng = np.random.default_rng(7)
    train_loss, val_loss, baseline = example_curves("overfitting", rng)
    assert (
        diagnose(train_loss * 100, val_loss * 100, baseline * 100).label
        == diagnose(train_loss / 100, val_loss / 100, baseline / 100).label
        == "overfitting"
    )
    flat = np.full(20, 2.0)
    assert diagnose(flat, flat).label == "stalled"
    assert diagnose([2.0, 1.5, float("nan"), float("nan")], [2.0, 1.6, 1.7, float("nan")]).label == "diverging"


# ---- bad input ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda: lr_sweep(lrs=[-0.01, 0.1]), ["lrs", "positive", "-0.01"]),
        (lambda: lr_sweep(steps=0), ["steps", "positive"]),
        (lambda: optimizer_race(lr={"AdamW": -1e-3}), ["lr['AdamW']", "positive"]),
        (lambda: clipping_demo(max_norm=0), ["max_norm", "positive"]),
        (lambda: clipping_demo(max_norm=-1.0), ["max_norm", "positive"]),
        (lambda: schedule_explorer(warmup_steps=500, max_steps=100), ["warmup_steps", "max_steps"]),
        (lambda: schedule_explorer(warmup_steps=500, max_steps=100, static=True), ["warmup_steps", "max_steps"]),
        (lambda: curve_doctor([1.0, 0.5], [1.0, 0.6]), ["at least 3"]),
    ],
)
def test_bad_arguments_show_a_clear_message_inside_the_widget(build, words):
    panel = build()  # must not raise
    assert isinstance(panel, ipywidgets.Widget)
    text = panel.readout.value.replace("&#x27;", "'")
    assert "Traceback" not in text
    for word in words:
        assert word in text, (word, text)


def test_schedule_explorer_sliders_cannot_reach_settings_the_schedule_refuses():
    """warmup_steps past max_steps (or min_lr above max_lr) blanked the picture: the bounds follow the sliders."""
    panel = schedule_explorer()
    warmup, max_steps, max_lr, min_lr = (panel.controls[k] for k in ("warmup_steps", "max_steps", "max_lr", "min_lr"))
    warmup.value = 1500  # beyond max_steps = 1000: held at max_steps
    assert warmup.value == 1000 and shown(panel.image)
    max_steps.value = 300  # pulls warmup down with it
    assert warmup.max == 300 and warmup.value == 300 and shown(panel.image)
    assert "must not exceed" not in panel.readout.value
    max_lr.value = 1e-3
    min_lr.value = 1e-1  # above max_lr: held at max_lr
    assert min_lr.value == pytest.approx(1e-3) and shown(panel.image)
    max_steps.value = 2000
    assert warmup.max == 2000 and warmup.value == 300  # widening keeps the setting


# ---- a slider move redraws one figure ---------------------------------------------------------

SMALL = {  # each widget at a few training steps: the figure, not the runs, is what these tests watch
    "lr_sweep": lambda **kw: lr_sweep(lrs=(1e-3, 0.1, 1.0), steps=20, **kw),
    "optimizer_race": lambda **kw: optimizer_race(steps=20, **kw),
    "clipping_demo": lambda **kw: clipping_demo(steps=20, **kw),
    "schedule_explorer": schedule_explorer,
}


@pytest.mark.parametrize("name", list(SMALL))
def test_a_slider_move_draws_on_the_widgets_one_figure(name, monkeypatch):
    """A move changes the artists of the figure the widget keeps: building a figure per frame (axes, ticks,
    legend, a new Agg renderer) was most of an answer's time, and the schedule and clipping widgets did."""
    panel = SMALL[name]()
    made: list[Figure] = []
    build = Figure.__init__

    def counted(self, *args, **kwargs):
        made.append(self)
        build(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "__init__", counted)
    controls = [c for n, c in CONTROLS if n == name]
    for control in controls:
        before = shown(panel.image)
        move(panel.controls[control])  # a setting not seen before: a new frame is drawn
        assert shown(panel.image) != before, f"{name}: moving {control} drew nothing new"
    assert made == [], f"{name}: {len(made)} figures built for {len(controls)} slider moves"


@pytest.mark.parametrize(("name", "moves"), [
    ("schedule_explorer", (("warmup_steps", 0), ("max_steps", 2000), ("max_lr", 1e-2))),
    ("schedule_explorer", (("warmup_steps", 0), ("max_lr", 1e-2), ("warmup_steps", 400))),  # the warmup phase empty, then back
    ("clipping_demo", (("max_norm", 5.0), ("lr", 0.03))),
    ("clipping_demo", (("lr", 0.03), ("max_norm", 0.05), ("lr", 0.5))),
])
def test_a_frame_drawn_after_others_is_the_frame_a_fresh_widget_draws(name, moves):
    """The kept figure carries nothing from earlier frames (limits, hidden phase names, bar heights, labels):
    the last frame of a walk over settings is byte for byte the first frame of a widget built at them."""
    panel = SMALL[name]()
    for control, value in moves:
        slider = panel.controls[control]
        if isinstance(slider, ipywidgets.SelectionSlider):
            slider.index = slider.grid.index(value)
        else:
            slider.value = value
    fresh = SMALL[name](**dict(moves)).image
    assert shown(panel.image) == shown(fresh)
    assert alt(panel.image) == alt(fresh)


def test_the_clipping_figures_axes_fit_each_frames_own_run():
    """Each frame's limits come from its own data: a run's gradient norms and max_norm are inside the log axis,
    the example's components inside the bar axis, whatever was drawn before (a kept figure never rescales itself)."""
    grads = [torch.tensor(g) for g in ([2.0, -1.5], [0.1, 0.2, -0.1], [0.4])]
    figure = ClippingFigure(torch.cat(grads), [g.numel() for g in grads])
    runner = Runs(None, None, None, steps=20)
    for max_norm, lr in ((5.0, 0.03), (0.05, 0.5), (1.0, 0.1)):
        history = runner.run(lr, clip=max_norm)
        figure.png(clip_example(grads, max_norm), history, max_norm, lr)
        low, high = figure.run.get_ylim()
        norms = [n for n in history.grad_norm if np.isfinite(n)]
        assert low <= min(*norms, max_norm) and max(*norms, max_norm) <= high, (max_norm, lr, (low, high), norms)
        bottom, top = figure.bars.get_ylim()
        assert bottom <= -1.5 and 2.0 <= top and top < 3.0, (bottom, top)


# ---- static mode --------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(FACTORIES))
def test_static_mode_links_the_slider_to_a_stack_of_distinct_frames(static, name):
    panel = static[name]
    (slider,) = panel.controls.values()
    stack = panel.stack
    assert isinstance(stack, ipywidgets.Stack)
    (link,) = panel.links
    assert isinstance(link, ipywidgets.widgets.widget_link.Link)  # jslink: runs in the browser, not in Python
    assert link.source == (slider, "index") and link.target == (stack, "selected_index")
    assert len(slider.options) == len(stack.children) >= 5
    assert stack.selected_index == slider.index
    pictures = [page.children[0] if isinstance(page, ipywidgets.Box) else page for page in stack.children]
    frames = [shown(picture) for picture in pictures]
    assert all(f.startswith(PNG) for f in frames)
    assert len(set(frames)) == len(frames), "every slider position shows its own picture"
    alts = [alt(picture) for picture in pictures]
    assert len(set(alts)) == len(alts), f"every frame's alt text says what that frame shows: {alts}"
    state = embed_data(views=[panel])["manager_state"]["state"]
    links = [s["state"] for s in state.values() if s["model_name"] == "LinkModel"]
    wanted = (f"IPY_MODEL_{slider.model_id}", "index", f"IPY_MODEL_{stack.model_id}", "selected_index")
    assert any((*link["source"], *link["target"]) == wanted for link in links), "the jslink is in the embedded state"
    assert json.dumps(state)  # serialisable as the book embeds it


def test_static_curve_doctor_hides_each_verdict_in_a_closed_accordion(static):
    for page in static["curve_doctor"].stack.children:
        accordion = page.children[1]
        assert isinstance(accordion, ipywidgets.Accordion) and accordion.selected_index is None
        assert "Diagnosis:" in accordion.children[0].value


def test_frame_switcher_rejects_mismatched_frames_and_labels():
    with pytest.raises(ValueError, match="one label per frame"):
        frame_switcher([PNG, PNG], ["a"], "x", alts=["p", "q"])
    with pytest.raises(ValueError, match="distinct"):
        frame_switcher([PNG, PNG], ["a", "a"], "x", alts=["p", "q"])
    with pytest.raises(ValueError, match="one alt text per frame"):
        frame_switcher([PNG, PNG], ["a", "b"], "x", alts=["p"])
    with pytest.raises(ValueError, match="needs alt text"):
        frame_switcher([PNG, PNG], ["a", "b"], "x", alts=["p", " "])


def test_picture_html_carries_its_png_and_escaped_alt_text():
    picture = Picture()
    picture.show(PNG + b"frame", 'loss "0.3" < 1 & falling')
    assert shown(picture) == PNG + b"frame" == picture.png
    assert alt(picture) == 'loss "0.3" < 1 & falling'
    picture.show(PNG + b"next", "another frame")
    assert shown(picture) == PNG + b"next" and alt(picture) == "another frame"


def test_static_alt_texts_name_the_setting_and_the_numbers_of_each_frame(static):
    """Each frame's alt text names the slider's value and gives numbers read off that frame."""
    sweep = static["lr_sweep"]
    slider = sweep.controls["learning rate"]
    for label, page in zip(slider.options, sweep.stack.children):
        text = alt(page.children[0])
        assert f"learning rate {label}, diagnosed" in text and re.search(r"train loss \d", text), text
    race = static["optimizer_race"]
    for label, page in zip(race.controls["learning rate of every optimizer"].options, race.stack.children):
        text = alt(page.children[0])
        assert all(f"{name} at lr {label}," in text for name in ("SGD", "SGD momentum 0.9", "AdamW")), text
    clipping = static["clipping_demo"]
    for label, page in zip(clipping.controls["clipping threshold max_norm"].options, clipping.stack.children):
        assert f"max_norm {label} " in alt(page.children[0]) and "% of steps" in alt(page.children[0])
    schedule = static["schedule_explorer"]
    for label, page in zip(schedule.controls["warmup steps"].options, schedule.stack.children):
        text = alt(page.children[0])
        assert f"warmup_steps {label}," in text and "highest 0.003 at step" in text, text


def test_static_curve_doctor_alt_text_gives_the_numbers_but_not_the_verdict(static):
    """A reader who hears the picture can guess too: the numbers are there, the answer is not."""
    for page in static["curve_doctor"].stack.children:
        text = alt(page.children[0])
        assert (
            re.search(r"Train [\d.e+-]+ at (step|evaluation) \d+", text)
            and re.search(r"; validation [\d.e+-]+ at", text)
        ), text
        assert not any(kind in text for kind in KINDS), text


# ---- optimizers and clipping --------------------------------------------------------------

def final_losses(panel: Panel) -> dict[str, str]:
    return dict(re.findall(r"<tr><td>([^<]+)</td><td>[^<]*</td><td>[^<]*</td><td>([^<]+)</td>", panel.readout.value))


def test_race_of_g2c_adamw_against_torch_adamw_ends_level():
    panel = optimizer_race(
        optimizers={"g2c AdamW": AdamW, "torch AdamW": torch.optim.AdamW},
        lr={"g2c AdamW": 1e-2, "torch AdamW": 1e-2},
        weight_decay={"g2c AdamW": 0.1, "torch AdamW": 0.1},
    )
    ends = final_losses(panel)
    assert set(ends) == {"g2c AdamW", "torch AdamW"}, panel.readout.value
    assert ends["g2c AdamW"] == ends["torch AdamW"] != "NaN"
    panel.controls["torch AdamW weight_decay"].value = "0"  # torch's default would be 1e-2: we pass ours
    assert final_losses(panel)["torch AdamW"] != ends["torch AdamW"]


def test_lr_sweep_with_torch_adamw_as_the_optimizer_factory():
    panel = lr_sweep(optimizer=torch.optim.AdamW, lrs=(1e-3, 1e-2, 0.1), lr=1e-2)
    assert "could not" not in panel.readout.value and shown(panel.image).startswith(PNG)
    sgd = lr_sweep(lrs=(1e-3, 1e-2, 0.1), lr=1e-2)
    assert shown(panel.image) != shown(sgd.image)


def test_clip_example_is_global_and_keeps_direction():
    grads = [torch.tensor([2.0, -1.5]), torch.tensor([0.1, 0.2, -0.1]), torch.tensor([0.4])]
    out = clip_example(grads, 1.0)
    expected = [g.clone().requires_grad_() for g in grads]
    for p, g in zip(expected, grads):
        p.grad = g.clone()
    assert out["before"] == pytest.approx(float(torch.nn.utils.clip_grad_norm_(expected, 1.0)))
    assert torch.allclose(out["flat_global"], torch.cat([p.grad for p in expected]))
    assert out["after"] == pytest.approx(1.0, abs=1e-4) and out["cos_global"] == pytest.approx(1.0, abs=1e-6)
    assert out["cos_per_tensor"] < 0.99  # the pitfall bends the direction


def test_clipping_demo_run_uses_the_loop_with_clip():
    panel = clipping_demo(max_norm=0.05, lr=0.3)
    fired = float(re.search(r"clipping fired on (\d+)% of steps", panel.readout.value).group(1))
    model = seeded(0, lambda: MLP([2, 32, 32, 1]))
    history = train(model, regression(), SGD(model.parameters(), lr=0.3), steps=200, clip=0.05, eval_every=10)
    assert fired == round(100 * history.clip_rate)
    assert "lr is probably too high" in panel.readout.value  # clipping on most steps


def test_widgets_draw_without_pyplot():
    """pyplot would pick a backend and may wait on a display; widgets use Figure + Agg only."""
    import subprocess
    import sys

    code = (
        "import sys; from g2c.widgets import lr_sweep, curve_doctor; "
        "lr_sweep(lrs=(1e-3, 0.1)); curve_doctor(quiz=True); print('matplotlib.pyplot' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_students_own_functions_drive_the_clipping_and_schedule_widgets():
    """The exercise notebook passes the student's clip_grad_norm_ and cosine_with_warmup."""

    def per_tensor_clip(params, max_norm):  # the module's pitfall
        norms = [p.grad.norm() for p in params]
        for p, n in zip(params, norms):
            p.grad.mul_(min(1.0, max_norm / (float(n) + 1e-6)))
        return torch.stack(norms).norm()

    right, wrong = clip_example(DEFAULT_GRADS_T, 1.0), clip_example(DEFAULT_GRADS_T, 1.0, per_tensor_clip)
    assert right["cos_global"] == pytest.approx(1.0, abs=1e-6) and wrong["cos_global"] < 0.99
    assert shown(clipping_demo(clip=per_tensor_clip, max_norms=(0.5, 1.0), lrs=(0.3,), steps=20).image) != shown(
        clipping_demo(max_norms=(0.5, 1.0), lrs=(0.3,), steps=20).image)

    def no_decay(step, *, warmup_steps, max_steps, max_lr, min_lr=0.0):  # warms up, never decays
        return max_lr * min(1.0, step / max(1, warmup_steps))

    assert shown(schedule_explorer(schedule=no_decay).image) != shown(schedule_explorer().image)

    def stub(step, **settings):
        raise NotImplementedError

    panel = schedule_explorer(schedule=stub)  # an unwritten answer: a message, not a traceback
    assert "NotImplementedError" in panel.readout.value and "Traceback" not in panel.readout.value


DEFAULT_GRADS_T = [torch.tensor([2.0, -1.5]), torch.tensor([0.1, 0.2, -0.1]), torch.tensor([0.4])]

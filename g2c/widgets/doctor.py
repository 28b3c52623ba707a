"""``curve_doctor``: name a curve's shape and the next action; a quiz mode draws fresh curves."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence

import ipywidgets as widgets
import numpy as np

from g2c.data import regression, tokens
from g2c.nn import MLP, TinyLM
from g2c.training import SGD, AdamW, History
from g2c.widgets.diagnosis import KINDS, STYLE, TERMS, Diagnosis, diagnose, example_curves
from g2c.widgets.frames import Frame, Panel, guarded, png_image, static_panel
from g2c.widgets.live import Values, live
from g2c.widgets.render import TRAIN_COLOR, VAL_COLOR, curve_words, legend_below, message_html, new_figure, to_png
from g2c.widgets.runs import Runs

Curves = tuple  # (train, val) or (train, val, baseline) evaluation-time losses


def curves_of(source: History | Curves) -> tuple[list[float], np.ndarray, np.ndarray, float | None]:
    """(x, train, val, baseline) to plot: a History's evaluation steps, or evaluation indices for arrays."""
    if isinstance(source, History):
        return (
            list(source.eval_steps),
            np.asarray(source.eval_train_loss, float),
            np.asarray(source.val_loss, float),
            source.baseline_loss,
        )
    train, val = (np.asarray(c, float) for c in source[:2])
    return list(range(len(train))), train, val, (source[2] if len(source) > 2 else None)


def diagnosis_of(source: History | Curves) -> Diagnosis:
    """``diagnose`` on a History or on (train, val[, baseline]) arrays."""
    return diagnose(source) if isinstance(source, History) else diagnose(*source)


def draw(source: History | Curves, title: str) -> bytes:
    x, train, val, baseline = curves_of(source)
    fig, (ax,) = new_figure(6.5, 4.2, legend_below=0.16)
    fig.subplots_adjust(left=0.14)  # room for the ylabel
    ax.plot(x, train, color=TRAIN_COLOR, lw=2, label="train")
    ax.plot(x, val, color=VAL_COLOR, lw=2, ls="--", label="validation")
    if baseline is not None:
        ax.axhline(baseline, color="0.4", ls=":", lw=1.5, label="predict-the-mean loss")
    finite = np.concatenate([train[np.isfinite(train)], val[np.isfinite(val)], [baseline or 0.0]])
    if len(finite):
        ax.set_ylim(0, min(finite.max(), 4 * finite[0]) * 1.1)
    if isinstance(source, History) and source.diverged:
        ax.axvline(source.diverged_at, color=STYLE["diverging"]["color"], ls="-.",
                   label=f"inf or NaN at step {source.diverged_at}")
    ax.set_xlabel("step" if isinstance(source, History) else "evaluation")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=11)
    legend_below(ax, ncol=2)
    return to_png(fig)


def alt_text(source: History | Curves, title: str) -> str:
    """What ``draw(source, title)`` shows, in numbers, and no verdict the title does not give.

    The static doctor lets a reader guess before opening the diagnosis: a reader who hears the
    picture gets its numbers, the same evidence a reader who sees it gets, and no more.
    """
    x, train, val, _ = curves_of(source)
    unit = "step" if isinstance(source, History) else "evaluation"
    nan = f"; the loss was inf or NaN at step {source.diverged_at}" if isinstance(source, History) and source.diverged else ""
    return (f"{title}: train loss (solid) and validation loss (dashed) against {unit}. "
            f"{curve_words('Train', x, train, unit=unit)}; {curve_words('validation', x, val, unit=unit)}{nan}.")


def verdict_html(d: Diagnosis, note: str = "") -> str:
    """The diagnosis, its evidence and deciding clause, the next step, and (``note``) how the curve was made."""
    made = f"<br>{html.escape(note)}" if note else ""
    return message_html(
        f"<b>Diagnosis: {d.tag}</b> ({d.reason}).<br><b>Next:</b> {d.action}{made}", kind="ok" if d.label == "healthy" else "warn"
    )


def _recipes(seed: int) -> dict[str, Callable[[], History]]:
    """How each real example run is made, in the shuffled order the doctor shows them (training deferred)."""
    sweep = Runs(None, regression(), SGD, steps=200, seed=seed)
    small = Runs(lambda: TinyLM(12, 2), tokens(n_train=512, batch_size=None), AdamW, steps=300, seed=seed)
    linear = Runs(lambda: MLP([2, 1]), regression(), AdamW, steps=300, seed=seed)
    recipes = {
        "the MLP on regression(), SGD lr 0.001": lambda: sweep.run(1e-3),
        "the MLP on regression(), SGD lr 0.1": lambda: sweep.run(0.1),
        "the MLP on regression(), SGD lr 1": lambda: sweep.run(1.0),
        "TinyLM on 512 token pairs, AdamW lr 3e-3": lambda: small.run(3e-3),
        "a linear model (no hidden layer) on regression(), AdamW lr 0.01": lambda: linear.run(1e-2),
    }
    order = np.random.default_rng(seed + 1).permutation(len(recipes))  # shuffled: the order must not give the answers away
    names = list(recipes)
    return {names[i]: recipes[names[i]] for i in order}


def example_runs(seed: int = 0) -> dict[str, History]:
    """Five real runs of the course's loop (about 0.6 s), one made for each term, keyed by how each was made."""
    return {recipe: make() for recipe, make in _recipes(seed).items()}


def example_notes(seed: int = 0) -> dict[str, str]:
    """Each example's title -> how it was made. Titles are neutral ("real run 3"): a recipe such as
    "SGD lr 1" would give the diagnosis away, so it is told only with the verdict."""
    notes = {f"real run {n + 1}": f"This run: {recipe}." for n, recipe in enumerate(_recipes(seed))}
    rng = np.random.default_rng(seed)
    for n, kind in enumerate(rng.permutation(KINDS)):
        notes[f"drawn curve {n + 1}"] = f"This curve was drawn by example_curves as {kind}."
    return notes


def examples(seed: int = 0) -> dict[str, History | Curves]:
    """The real runs, then one generated curve per term, each shuffled, under titles that do not give the answer."""
    found: dict[str, History | Curves] = {f"real run {n + 1}": h for n, h in enumerate(example_runs(seed).values())}
    rng = np.random.default_rng(seed)
    for n, kind in enumerate(rng.permutation(KINDS)):
        found[f"drawn curve {n + 1}"] = example_curves(str(kind), rng)
    return found


@guarded("curve_doctor")
def curve_doctor(
    history: History | Sequence[float] | None = None,
    val: Sequence[float] | None = None,
    *,
    baseline: float | None = None,
    quiz: bool = False,
    seed: int = 0,
    static: bool = False,
) -> Panel:
    """Diagnose train/validation curves in the module's language.

    - ``curve_doctor(history)`` or ``curve_doctor(train_losses, val_losses, baseline=...)``: that
      run's verdict (``baseline``: the data's predict-the-mean loss; a History carries its own).
    - ``curve_doctor()``: a menu of real runs and drawn curves.
    - ``curve_doctor(quiz=True)``: "New curve" draws a fresh curve of a random shape; pick a
      diagnosis and press "Check".
    - ``static=True``: a slider over the examples; each verdict is folded away under
      "Diagnosis" so a reader can guess first (works with no kernel).
    """
    if history is not None:
        if not isinstance(history, History) and val is None:
            raise ValueError("pass validation losses too: curve_doctor(train_losses, val_losses)")
        source = history if isinstance(history, History) else (history, val, baseline)
        d = diagnosis_of(source)
        return live({}, lambda _values: frame(source, f"diagnosis: {d.tag}", verdict_html(d)), what="curve_doctor")
    if quiz:
        return _quiz(seed)

    found, notes = examples(seed), example_notes(seed)
    if static:
        frames = [frame(source, name, folded(verdict_html(diagnosis_of(source), notes[name]))) for name, source in found.items()]
        return static_panel("example curve", [f"{i + 1}" for i in range(len(found))], frames)

    def example(values: Values) -> Frame:
        name = values["curve"]
        return frame(found[name], name, verdict_html(diagnosis_of(found[name]), notes[name]))

    menu = widgets.Dropdown(options=list(found), index=0, description="curve", layout={"width": "420px"})
    return live({"curve": menu}, example, what="curve_doctor")


def frame(source: History | Curves, title: str, caption: str | widgets.Widget) -> Frame:
    return Frame(draw(source, title), alt_text(source, title), caption)


def folded(verdict: str) -> widgets.Accordion:
    """The verdict under a closed "Diagnosis" header, so a reader of the book can guess first."""
    return widgets.Accordion(
        children=[widgets.HTML(verdict)], titles=("Diagnosis (open after you have guessed)",), selected_index=None
    )


def quiz_verdict(answer: str | None, truth: Diagnosis) -> str:
    """Check's answer in the module's five terms: right or not, which term it is, and that term's next step."""
    if answer is None:
        return message_html("Pick a diagnosis first.", kind="warn")
    term = TERMS[truth.label]
    verdict = "Right" if answer == term.name else f"Not quite (you picked {html.escape(answer)})"
    return message_html(f"<b>{verdict}. Diagnosis: {term.name}</b> ({term.seen}: {truth.reason}).<br><b>Next:</b> {term.action}",
                        kind="ok" if answer == term.name else "error")


def quiz_truth(kind: str, curves: Curves) -> Diagnosis:
    """The shape drawn is the answer; ``diagnose``'s reason explains it when the doctor agrees."""
    found = diagnose(*curves)
    return found if found.label == kind else Diagnosis(kind, TERMS[kind].action, f"drawn as {kind}")


def _quiz(seed: int) -> Panel:
    rng = np.random.default_rng(seed)
    new = widgets.Button(description="New curve", icon="refresh")
    answer = widgets.ToggleButtons(options=KINDS, value=None, description="Your diagnosis:", style={"button_width": "95px"})
    check = widgets.Button(description="Check", button_style="primary")
    image, readout = png_image(), widgets.HTML()
    panel = Panel(
        [widgets.HBox([new, check]), answer, image, readout],
        controls={"new": new, "answer": answer, "check": check},
        image=image,
        readout=readout,
    )
    drawn: list[Diagnosis] = []

    def draw_new(_button: object = None) -> None:
        kind = KINDS[int(rng.integers(len(KINDS)))]
        curves = example_curves(kind, rng)
        title = f"curve {len(drawn) + 1}: what is wrong, if anything?"
        drawn.append(quiz_truth(kind, curves))
        answer.value = None
        panel.show(frame(curves, title, message_html("Pick a diagnosis, then press Check.")))

    def grade(_button: object = None) -> None:
        readout.value = quiz_verdict(answer.value, drawn[-1])

    new.on_click(draw_new)
    check.on_click(grade)
    draw_new()
    return panel

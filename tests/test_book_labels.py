"""Every run the book shows carries the label ``g2c.widgets.diagnose`` gives it, wherever it is shown.

The figures' legends and panel titles are checked on the figures ``book/_figures.py`` draws (no
book needed); the captions, the generated sentences and tables, and the static widgets' captions
and tables are checked in the built HTML (``make test-book``). Each check parses what the reader
sees and compares it with ``diagnose`` run here on the same runs, so a caption, legend or widget
with a rule of its own fails.
"""

from __future__ import annotations

import html as htmllib
import json
import os
import re
import sys
from pathlib import Path

import pytest
import torch

from g2c.widgets import KINDS, diagnose
from g2c.widgets.runs import LR_GRID, Runs

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html" / "book"
sys.path.insert(0, str(ROOT / "book"))
import _figures as F  # noqa: E402

torch.set_num_threads(1)
needs_book = pytest.mark.skipif(os.environ.get("G2C_TEST_BOOK") != "1", reason="needs the built book: run `make test-book`")


def tag(history) -> str:
    return diagnose(history).tag


def text(fragment: str) -> str:
    return (
        " ".join(htmllib.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())
        .replace(" ,", ",").replace(" .", ".").replace(" ;", ";").replace(" :", ":")
        .replace("( ", "(").replace(" )", ")")
    )


def page(name: str) -> str:
    path = HTML / name
    assert path.exists(), f"no {path}: run `make book`"
    return path.read_text(encoding="utf-8")


def caption(name: str, figure: str) -> str:
    found = re.search(rf'<figure[^>]*id="{figure}".*?<figcaption>(.*?)</figcaption>', page(name), re.S)
    assert found, f"{figure}: no caption in {name}"
    return text(found.group(1))


def widget_html(name: str) -> list[str]:
    """The HTML under each frame of a page's embedded static widget (caption or table), in slider order.

    Walked from the widget's view: its Stack's pages, each a VBox of the picture and the caption
    (an HTML widget, or an Accordion holding one); the state's own order is not the slider's.
    """
    body = page(name)
    state = json.loads(
        re.search(r'<script type="application/vnd.jupyter.widget-state\+json">(.*?)</script>', body, re.S).group(1)
    )["state"]
    (view,) = re.findall(r'<script type="application/vnd.jupyter.widget-view\+json">(.*?)</script>', body, re.S)

    def model(ref: str) -> dict:
        return state[ref.removeprefix("IPY_MODEL_")]

    def html_in(ref: str) -> str:
        found = model(ref)
        if found["model_name"] == "HTMLModel":
            return found["state"]["value"]
        return "".join(html_in(child) for child in found["state"].get("children", []))

    root = state[json.loads(view)["model_id"]]
    (stack,) = (model(c) for c in root["state"]["children"] if model(c)["model_name"] == "StackModel")
    return [html_in(page_ref) for page_ref in stack["state"]["children"]]


def by_lr(sentence: str) -> dict[float, str]:
    """'**stalled** at lr 0.001 to 0.03; **healthy** at lr 0.1' (as text) -> {lr: label} for the rates in the sweep."""
    found: dict = {}
    sentence = sentence.replace("*", "")
    for label, rates in re.findall(
        r"((?:{})(?:, \d+ spikes?)?) at lr ([\d.e+-]+(?: (?:to|and) [\d.e+-]+)?)".format("|".join(KINDS)), sentence
    ):
        ends = [float(x) for x in re.split(" to | and ", rates)]
        found[(ends[0], ends[-1], " to " in rates)] = label  # type: ignore[index]
    return found


def label_of(groups: dict, lr: float) -> str | None:
    for (low, high, span), label in groups.items():
        if lr in (low, high) or (span and low <= lr <= high):
            return label
    return None


# ---- figures (legends and titles, as drawn) --------------------------------------------------

@pytest.fixture(scope="module")
def sweep():
    return F.sweep_runs()


def legend_texts(fig) -> list[str]:
    return [
        t.get_text()
        for legend in fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
        for t in legend.get_texts()
    ]


def test_lr_sweep_legend_names_each_run_as_diagnose_does(sweep):
    shown = legend_texts(F.lr_sweep_figure(sweep))
    assert shown[: len(sweep)] == [f"lr={lr:g}: {tag(h)}" for lr, h in sweep.items()]


def test_sgd_vs_adamw_legend_names_each_run_as_diagnose_does():
    runs = F.matched_runs()
    shown = legend_texts(F.sgd_vs_adamw_figure(runs))
    assert shown[: len(runs)] == [f"{name}: {tag(h)}" for name, h in runs.items()]


def test_curve_shapes_panels_are_titled_by_diagnose_and_show_all_five_terms():
    runs = F.curve_shape_runs()
    fig = F.curve_shapes_figure(runs)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == [f"{'ABCDE'[n]}: {tag(h)}" for n, h in enumerate(runs.values())]
    assert {diagnose(h).label for h in runs.values()} == set(KINDS), "the figure shows one run of every term"


# ---- the built book: captions, sentences, tables ---------------------------------------------

@needs_book
def test_lr_sweep_caption_gives_each_rate_its_label(sweep):
    groups = by_lr(caption("learning-rates.html", "fig-lr-sweep"))
    assert {lr: label_of(groups, lr) for lr in sweep} == {lr: tag(h) for lr, h in sweep.items()}


@needs_book
def test_sweep_widget_summary_and_frames_give_each_rate_its_label():
    runner = Runs(None, None, None, steps=200)
    expected = {lr: tag(runner.run(lr)) for lr in LR_GRID}
    prose = text(page("learning-rates.html"))
    summary = prose[prose.index("whose marker is the run"):]
    groups = by_lr(summary[: summary.index("The dotted green line")])
    assert {lr: label_of(groups, lr) for lr in LR_GRID} == expected
    frames = dict(re.findall(r"<b>lr ([\d.e+-]+): ([^<(]+?)</b>", "".join(widget_html("learning-rates.html"))))
    assert {float(lr): shown for lr, shown in frames.items()} == expected


@needs_book
def test_sgd_vs_adamw_caption_gives_each_run_its_label():
    shown = dict(
        re.findall(r"((?:SGD(?: momentum [\d.]+)?|AdamW) lr [\d.e-]+) ends at [\d.]+ \(([^)]+)\)",
                   caption("optimizers.html", "fig-sgd-vs-adamw"))
    )
    assert shown == {name: tag(h) for name, h in F.matched_runs().items()}


@needs_book
def test_sgd_vs_adamw_exercise_answer_names_the_runs_label():
    words = text(page("optimizers.html"))
    run = r"((?:SGD(?: momentum [\d.]+)?|AdamW) lr [\d.e-]+)"
    name, shown = re.search(run + r": its validation loss ends at .*? calls it ([^:]+):", words).groups()
    assert shown == tag(F.matched_runs()[name])


def race_expected() -> dict[tuple[str, float], str]:
    from g2c.widgets.race import default_optimizers

    runner = Runs(None, None, None, steps=200)
    return {(name, lr): tag(runner.run(lr, weight_decay=0.0, optimizer=factory, key=name))
            for lr in LR_GRID if 1e-3 <= lr <= 1.0 for name, factory in default_optimizers().items()}


@needs_book
def test_race_table_and_summary_give_each_run_its_label():
    expected = race_expected()
    rows = re.findall(
        r"<tr><td>([^<]+)</td><td>([^<]+)</td><td>[^<]*</td><td>[^<]*</td><td>([^<]+)</td></tr>",
        "".join(widget_html("optimizers.html")),
    )
    assert {(name, float(lr)): shown for name, lr, shown in rows} == expected
    body = re.sub(r"<script.*?</script>", "", page("optimizers.html"), flags=re.S)  # the page, not the widget's state
    summary = next(t for t in re.findall(r"<table.*?</table>", body, re.S) if "SGD momentum 0.9" in t and "<th" in t)
    head = [text(c) for c in re.findall(r"<th[^>]*>(.*?)</th>", summary, re.S)]
    cells = {}
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", summary, re.S)[1:]:
        lr, *labels = [text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        cells.update({(name, float(lr)): shown for name, shown in zip(head[1:], labels)})
    assert cells == expected


@needs_book
def test_curve_shapes_caption_gives_each_panel_its_label():
    shown = re.findall(r"\b([A-E]) \(.*?\): ({})\b".format("|".join(KINDS)), caption("reading-curves.html", "fig-curve-shapes"))
    assert shown == [("ABCDE"[n], diagnose(h).label) for n, h in enumerate(F.curve_shape_runs().values())]


@needs_book
def test_curve_doctor_verdicts_are_diagnose_on_each_example():
    from g2c.widgets.doctor import diagnosis_of, examples

    shown = re.findall(r"<b>Diagnosis: ([^<]+)</b>", "".join(widget_html("reading-curves.html")))
    assert shown == [diagnosis_of(source).tag for source in examples().values()]


@needs_book
def test_clipping_widget_names_each_runs_diagnosis():
    from g2c.widgets.clipping import MAX_NORMS

    runner = Runs(None, None, None, steps=200)
    shown = re.findall(r"diagnosis: <b>([^<]+)</b>", "".join(widget_html("clipping.html")))
    assert shown == [tag(runner.run(0.3, clip=m)) for m in MAX_NORMS]


def test_the_parsers_catch_a_wrong_label():
    """A caption that calls a stalled rate 'healthy' is read as saying so."""
    groups = by_lr("**stalled** at lr 0.001 to 0.01; **healthy** at lr 0.03 and 0.1; **diverging** at lr 1")
    assert [label_of(groups, lr) for lr in (0.001, 0.003, 0.01, 0.03, 0.1, 1.0, 3.0)] == [
        "stalled", "stalled", "stalled", "healthy", "healthy", "diverging", None,
    ]

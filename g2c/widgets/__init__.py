"""Module 03B's interactive sweeps: change one knob at a time and watch.

Five factories; each is callable with no arguments and returns an ``ipywidgets`` widget (a
``Panel``, i.e. a ``VBox`` with handles ``.controls``, ``.image``, ``.readout``, ``.stack``,
``.links``). Every training run goes through ``g2c.training.train`` from a seeded start. Their
keyword arguments are in each factory's own docstring (``help(lr_sweep)``); the calls the
exercise notebook makes:

- ``lr_sweep(lambda: MLP((2, 32, 1)))``: one run per learning rate, each named by ``diagnose``.
- ``optimizer_race(factory, optimizers={"your AdamW": AdamW, "torch.optim.AdamW": torch.optim.AdamW})``.
- ``clipping_demo(clip=clip_grad_norm_)``: the example gradient clipped by the student's function.
- ``schedule_explorer(warmup_steps=100, max_steps=1000, max_lr=3e-4, min_lr=3e-5, schedule=cosine_with_warmup)``.
- ``curve_doctor(quiz=True)``: name a fresh curve with one of the five terms, then Check.

``diagnose(history)`` is the one classifier behind every label the widgets, the book's figures,
captions and tables show; ``TERMS`` defines its five terms (diverging, overfitting, underfit,
stalled, healthy) once, with the test that tells each from the curves and the next thing to try.

``model`` is a ``torch.nn.Module`` (copied per run) or a function building one; ``data`` a
``g2c.data.Dataset``; ``optimizer`` a factory called as ``optimizer(params, lr=...)`` (the race
also passes ``weight_decay=``), so ``g2c.training.AdamW``, ``torch.optim.AdamW`` or
``functools.partial(g2c.training.SGD, momentum=0.9)`` all work.

The shared frame (every widget is built from it):

- ``runs.Runs``: trains once per setting from the same seeded start and caches the History;
  ``runs.LR_GRID`` is the one learning-rate grid (1e-4 ... 3, powers of about 3); ``runs.check_*``
  turn bad arguments into a ``ValueError`` that says which argument and why.
- ``frames.Frame(png, alt, caption)``: what a widget shows for one setting.
- ``live.GridSlider(description, grid, value)``: a slider over a grid of numbers that starts at
  ``live.nearest(grid, value)`` (the one nearest-value rule: closest by ratio, i.e. on a log axis);
  ``live.grid_with(grid, value)`` when the caller's value must be on the slider itself.
- ``live.live(controls, render, what=...)``: redraws ``render(values) -> Frame`` on every move,
  once per setting; when ``render`` raises (a student's unwritten stub, settings that do not fit
  together) the widget shows a red message headed by ``what`` and no picture.
- ``frames.static_panel(description, labels, frames, index=...)``: static mode, below.
- ``frames.guarded(what)``: a factory whose arguments are bad returns a widget with the message.

A new widget is one module (a ``render`` function, and a ``@guarded`` factory that hands it to
``live`` and ``static_panel``), a code cell in its chapter (``from g2c.widgets.<module> import
<factory>``), and a test.

Plots are PNGs drawn by matplotlib's Agg backend into a ``Picture`` (an ``<img>`` with alt
text in an ``ipywidgets.HTML``: ``ipywidgets.Image`` has no alt text): no ``plt.show``, no
``Output`` widget, nothing that waits for a display, so the widgets run under nbgrader's
autograder too. Every picture's alt text says what that frame shows (the run and its numbers)
and changes with it; colour is never the only cue (line styles, markers, hatching, names).
A ``Picture`` with no PNG is hidden, so a message is never under an empty or stale picture.

Live mode (default): Python callbacks redraw; every answer costs at most one tiny training
run plus one PNG (well under a second), and results are cached. A widget keeps one figure for
all its frames (``sweep.SweepFigure``, ``race.RaceFigure``, ``clipping.ClippingFigure``,
``schedule.ScheduleFigure``): a slider move changes artists' data and renders, it builds no
figure, axes or legend (``make bench`` compares a redraw with one on a new figure).

Static mode, for the book (``static=True``): every frame is precomputed into an
``ipywidgets.Stack`` of ``Picture`` widgets and a ``SelectionSlider``'s ``index`` is ``jslink``-ed
to the Stack's ``selected_index`` (``frames.frame_switcher``), so the slider switches pictures
in the browser with no kernel. One control per widget in static mode:

==================  ===================================  =====================================
widget              book code cell                       the static control
==================  ===================================  =====================================
lr_sweep            ``lr_sweep(static=True)``            learning rate (10 runs, 1e-4 ... 3)
optimizer_race      ``optimizer_race(static=True)``      one lr for all optimizers, wd 0
clipping_demo       ``clipping_demo(static=True)``       max_norm (training run at lr 0.3)
schedule_explorer   ``schedule_explorer(static=True)``   warmup_steps (max_steps 1000 fixed)
curve_doctor        ``curve_doctor(static=True)``        example curve; verdict in an Accordion
==================  ===================================  =====================================

How the book embeds one: a MyST-NB code cell, executed at build time, whose last expression
is the widget, e.g.::

    ```{code-cell} ipython3
    :tags: [remove-input]
    from g2c.widgets import lr_sweep
    lr_sweep(static=True)
    ```

myst-nb stores the kernel's widget state (``application/vnd.jupyter.widget-state+json``,
including the ``LinkModel`` of the jslink) in the page; the vendored html-manager renders it.
Use one widget per cell and only ``static=True`` widgets in the book: live widgets' Python
callbacks do not run in a static page. Each static widget embeds 6-10 PNG frames: about
250-650 kB of widget state per widget (lr_sweep is the largest).

Checked by hand in headless Chromium from ``file://``: a page holding the embedded state of
``lr_sweep(static=True)`` / ``curve_doctor(static=True)``, with ``require.js`` 2.3.4 and
``@jupyter-widgets/html-manager`` 1.0.6 ``dist/embed-amd.js`` loaded from local files: moving
the slider switched the frame. Vendor the whole ``dist/`` folder: the Accordion's chevron
icon loads font files from it (missing fonts only lose the icon), from the folder require.js
maps the ``@jupyter-widgets/...`` module ids to (the book's ``book/_vendor/widgets-offline.js``
maps them all into its copy of ``dist/``). ``tests/test_book_browser.py`` moves every book
widget's slider through every position in Chromium and checks the frame shown.

Accessibility (WCAG 2.1 AA): the alt text is in each ``Picture``'s own HTML, so it is read out
live and in the book alike. What ipywidgets' views cannot be told from Python is added in the
book by ``book/_vendor/widgets-a11y.js``: the slider handle's accessible name (the slider's
``description`` and its value, e.g. "learning rate 0.03": give every slider a description that
says what it changes), a polite live region reading each new frame's caption, and keyboard
buttons for Accordion headers. In a live Jupyter session the slider handles stay unnamed
(noUiSlider takes ``handleAttributes`` but ipywidgets 8.1 passes none).
"""

from g2c.widgets.clipping import clipping_demo
from g2c.widgets.diagnosis import KINDS, STYLE, TERMS, Diagnosis, diagnose, example_curves
from g2c.widgets.doctor import curve_doctor
from g2c.widgets.frames import Panel, Picture, frame_switcher
from g2c.widgets.race import optimizer_race
from g2c.widgets.schedule import schedule_explorer
from g2c.widgets.sweep import lr_sweep

__all__ = [
    "KINDS", "STYLE", "TERMS", "Diagnosis", "Panel", "Picture", "clipping_demo", "curve_doctor", "diagnose", "example_curves",
    "frame_switcher", "lr_sweep", "optimizer_race", "schedule_explorer",
]

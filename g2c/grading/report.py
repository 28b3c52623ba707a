"""``g2c report``: one offline HTML page about a graded class, for the instructor.

Read from what a batch already wrote (grades.csv for the numbers, ``results/`` for statuses,
reasons and times), never from student code: score histogram, points per part, how many
students fell into each pitfall (the pitfall catalogue's messages, as the feedback names them),
statuses, late submissions (and flagged submissions) and the slowest submissions. Charts are
inline SVG and there is no script, so the page reads the same from a USB stick.
"""

from __future__ import annotations

import csv
import html
import re
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from g2c.grading.course import GRADES_COLUMNS, Layout, atomic_write, grade_cells, load_results
from g2c.grading.pitfalls import Catalogue, catalogue

SLOWEST = 5  # submissions listed by grading time


def write_report(lay: Layout) -> Path:
    """Write ``report.html`` beside grades.csv and return its path."""
    with lay.grades_csv.open(newline="") as f:
        rows = list(csv.DictReader(f))
    points = grade_cells(lay)
    max_score = sum(points.values())
    results = load_results(lay)
    sections = [_summary(rows, max_score), _students(rows, results, max_score), _histogram(rows, max_score), _parts(rows, points),
                _pitfalls(results, catalogue(lay.spec)), _statuses(rows, results), _late(rows), _slowest(results)]
    page = (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>Class report: {html.escape(lay.assignment)}</title><style>{STYLE}</style></head><body><main>"
            f"<h1>Class report: {html.escape(lay.spec.title)}</h1>{''.join(sections)}"
            "</main></body></html>\n")
    atomic_write(lay.report_html, page.encode())
    return lay.report_html


STYLE = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1a1a1a}"
         "table{border-collapse:collapse;margin:.5rem 0 1.5rem}th,td{border:1px solid #bbb;padding:.25rem .6rem;text-align:left}"
         "td.n{text-align:right}img{max-width:100%}h2{margin-top:2rem}")


def _table(head: list[str] | None, body: list[list], numeric: set[int] = frozenset()) -> str:
    """An HTML table (no header row when ``head`` is None); columns in ``numeric`` are right-aligned."""
    def row(values: list, tag: str) -> str:
        cells = []
        for i, value in enumerate(values):
            right = " class=n" if i in numeric and tag == "td" else ""
            cells.append(f"<{tag}{right}>{html.escape(str(value))}</{tag}>")
        return "".join(cells)

    rows = "".join("<tr>" + row(r, "td") + "</tr>" for r in body)
    header = "" if head is None else f"<tr>{row(head, 'th')}</tr>"
    return f"<table>{header}{rows}</table>"


def _bars(bars: list[tuple[str, float, str]], top: float, caption: str, axis: str) -> str:
    """A horizontal bar chart as inline SVG, one (label, value, value as shown) per row: drawn in microseconds
    (matplotlib's import and PNG were 2 s of every batch's end), sharp at any zoom, and read by screen readers as
    one image named by ``caption`` (role=img, title)."""
    bar, gap, label_w, plot = 16, 4, 190, 380
    shapes = []
    for i, (label, value, shown) in enumerate(bars):
        y, size = 8 + i * (bar + gap), plot * max(0.0, min(value, top)) / (top or 1.0)
        shapes.append(f"<text x='{label_w - 6}' y='{y + 12}' text-anchor='end'>{html.escape(label)}</text>"
                      f"<rect x='{label_w}' y='{y}' width='{size:.1f}' height='{bar}' fill='#3b6ea5'/>"
                      f"<text x='{label_w + size + 4:.1f}' y='{y + 12}'>{html.escape(shown)}</text>")
    height = 30 + len(bars) * (bar + gap)
    return (f"<svg role='img' aria-labelledby='{_id(caption)}' width='{label_w + plot + 60}' "
            f"height='{height}' font-family='system-ui,sans-serif' font-size='12'><title id='{_id(caption)}'>"
            f"{html.escape(caption)}</title>{''.join(shapes)}"
            f"<text x='{label_w}' y='{height - 6}'>{html.escape(axis)}</text></svg>")


def _id(caption: str) -> str:
    return "chart-" + re.sub(r"[^a-z0-9]+", "-", caption.lower()).strip("-")[:40]


def _summary(rows: list[dict], max_score: float) -> str:
    scores = [float(r["score"]) for r in rows]
    pending = sum(1 for r in rows if _pending(r))
    body = [["submissions", len(rows)], ["points possible", f"{max_score:g}"],
            ["mean score", f"{statistics.mean(scores):.1f}" if scores else "-"],
            ["median score", f"{statistics.median(scores):g}" if scores else "-"],
            ["graded, with written answers still to grade by hand", pending]]
    return "<h2 id='summary'>Summary</h2>" + _table(None, body, {1})


def _pending(row: dict) -> bool:
    """A graded submission with written answers not graded by hand yet (an empty cell column)."""
    return row["status"] == "graded" and any(row[c] == "" for c in row if c not in GRADES_COLUMNS)


def _students(rows: list[dict], results: dict[str, dict], max_score: float) -> str:
    """One row per submission: grades.csv's score (hand grades in, after the late penalty), status, lateness
    whatever the penalty, and what to look at (flagged submissions, written answers still to grade)."""
    body = []
    for r in rows:
        flags = [r.get("timestamp_flag", "")] + (["written answers to grade by hand"] if _pending(r) else [])
        late = f"{r['minutes_late']} min (penalty {r['late_penalty']})" if r.get("minutes_late") else ""
        body.append([r["student_id"], f"{r['score']} of {max_score:g}", r["status"], late, "; ".join(f for f in flags if f)])
    return "<h2 id='students'>Students</h2>" + _table(["student", "score after penalty", "status", "late", "flags"], body, {1})


def _histogram(rows: list[dict], max_score: float) -> str:
    """Students per whole score (after late penalties): one column per score, labelled with it and its count."""
    counts = Counter(int(float(r["score"])) for r in rows)
    bars = [(f"score {score}", counts[score], str(counts[score])) for score in range(int(max_score) + 1)]
    caption = (f"Histogram of {len(rows)} scores out of {max_score:g}: "
               + ", ".join(f"{n} scored {score}" for score, n in sorted(counts.items())))
    return ("<h2 id='histogram'>Score histogram</h2>"
            + _bars(bars, max(counts.values(), default=1), caption, "students per score (after late penalties)"))


def _parts(rows: list[dict], points: dict[str, float]) -> str:
    """Per graded cell (in notebook order): its points, the mean score and how many got full marks."""
    cells = list(points)
    body, fractions = [], []
    for cell in cells:
        given = [float(r[cell]) for r in rows if r.get(cell, "") != ""]
        mean = statistics.mean(given) if given else None
        full = sum(1 for v in given if v >= points[cell])
        shown = "-" if mean is None else f"{mean:.2f}"
        body.append([cell, f"{points[cell]:g}", shown, f"{full} of {len(given)}", len(rows) - len(given)])
        fractions.append(0 if mean is None or not points[cell] else mean / points[cell])
    chart = _bars([(cell, 100 * f, f"{100 * f:.0f} %") for cell, f in zip(cells, fractions)], 100,
                  "Mean share of points per part", "mean share of the part's points (0 to 100 %)")
    return ("<h2 id='parts'>Points per part</h2>" + chart +
            _table(["part", "points", "mean", "full marks", "not graded yet"], body, {1, 2, 4}))


def _pitfalls(results: dict[str, dict], pitfalls: Catalogue) -> str:
    """Students per pitfall of the catalogue (named by its feedback message), then the mistakes it does
    not name, grouped by what failed and how (:func:`mistakes`)."""
    named = Counter()
    for result in results.values():
        reasons = [reason for part in result.get("reasons", {}).values() for reason in part]
        named.update({p.name for p in pitfalls.pitfalls for reason in reasons if p.message in reason})
    body = [[name, pitfalls.by_name[name].message, n] for name, n in named.most_common()]
    groups = mistakes(results, pitfalls)
    if not body and not groups:
        return "<h2 id='pitfalls'>Pitfalls</h2><p>No student lost a point to a known pitfall.</p>"
    text = "<h2 id='pitfalls'>Pitfalls</h2><p>Students who fell into each pitfall (a student counts once per pitfall).</p>" + \
        _table(["pitfall", "what the feedback says", "students"], body, {2})
    if groups:
        text += ("<h3 id='mistakes'>Mistakes the catalogue does not name</h3><p>Grouped by the cell and what failed there, "
                 "without the numbers of each student's draw (<code>g2c mistakes</code> lists them too): a group that grows "
                 "is a pitfall to add to pitfalls.toml.</p>"
                 + _table(["cell", "what failed", "students", "one of them"], [[g.cell, g.what, len(g.students), g.students[0]]
                                                                           for g in groups], {2}))
    return text


@dataclass
class Group:
    """Students whose points were lost the same way in one cell, to no named pitfall."""

    cell: str
    what: str
    students: list[str]
    example: str  # the representative's full reason


NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def behaviour(reason: str) -> str:
    """A reason's first line without the numbers of a draw: where (the path, numbers as #) and how
    ('is off', 'raised TypeError', 'is missing', ...), never the values or inputs that follow."""
    first = reason.splitlines()[0] if reason else ""
    if first.startswith("not written yet"):
        return "not written yet"
    if "raised " in first:
        return "raised " + first.split("raised ", 1)[1].split(":", 1)[0].split(" ", 1)[0]
    where, _, how = first.rpartition(": ") if ": is " not in first else first.partition(": is ")
    how = ("is " + how) if ": is " in first else how
    how = how.split(":", 1)[0].split(";", 1)[0].split(" (", 1)[0]
    how = re.sub(r" in \d+ of \d+ elements", "", how)
    return NUMBER.sub("#", f"{where}: {how}" if where else how)[:200]


def mistakes(results: dict[str, dict], pitfalls: Catalogue) -> list[Group]:
    """The reasons no pitfall names (but "not written yet"), grouped by (cell, behaviour), most students first; a student counts
    once per group, and the first of them (by id) stands for it."""
    groups: dict[tuple[str, str], Group] = {}
    for student in sorted(results):
        for cell, reasons in sorted(results[student].get("reasons", {}).items()):
            for reason in reasons:
                if reason.startswith("not written yet") or any(p.message in reason for p in pitfalls.pitfalls):
                    continue  # unwritten answers are no mistake (the parts table counts them)
                group = groups.setdefault((cell, behaviour(reason)), Group(cell, behaviour(reason), [], reason))
                if student not in group.students:
                    group.students.append(student)
    return sorted(groups.values(), key=lambda g: (-len(g.students), g.cell, g.what))


def _statuses(rows: list[dict], results: dict[str, dict]) -> str:
    counts = Counter(r["status"] for r in rows)
    body = [[status, n] for status, n in counts.most_common()]
    troubled = [[r["student_id"], r["status"], results.get(r["student_id"], {}).get("detail", "")]
                for r in rows if r["status"] != "graded"]
    text = "<h2 id='statuses'>Statuses</h2>" + _table(["status", "submissions"], body, {1})
    return text + (_table(["student", "status", "why"], troubled) if troubled else "")


def _late(rows: list[dict]) -> str:
    """Late submissions (by the server's time), then every flagged submission: a timestamp.txt that disagrees
    with the server's time, or an inbound entry in the student's name another account sent (g2c.grading.exchange)."""
    late = [[r["student_id"], r["timestamp"], r["minutes_late"], r["late_penalty"], r["score"]] for r in rows
            if r.get("minutes_late")]
    text = "<h2 id='late'>Late submissions</h2>"
    if late:
        text += _table(["student", "submitted (UTC)", "minutes late", "penalty", "score"], late, {2, 3, 4})
    else:
        text += "<p>No submission arrived after the due date.</p>"
    flagged = [[r["student_id"], r["timestamp"], r["timestamp_source"], r["timestamp_claimed"], r["timestamp_flag"]]
               for r in rows if r.get("timestamp_flag")]
    if not flagged:
        return text + ("<p>Nothing flagged: every timestamp.txt agrees with the server's time, and every entry was "
                       "sent by the student's own account.</p>")
    return (text + "<h3 id='flagged'>Flagged submissions</h3><p>The server's time decides lateness, and only an entry "
            "the student's own account sent is collected; each flag says what disagreed.</p>" +
            _table(["student", "server's time (UTC)", "from", "timestamp.txt claims", "flag"], flagged))


def _slowest(results: dict[str, dict]) -> str:
    ranked = sorted(results.values(), key=lambda r: -float(r.get("seconds", 0)))[:SLOWEST]
    body = [[r["student_id"], f"{float(r.get('seconds', 0)):.1f}", r.get("status", "")] for r in ranked]
    return "<h2 id='slowest'>Slowest submissions</h2>" + _table(["student", "seconds to grade", "status"], body, {1})

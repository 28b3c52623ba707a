"""Intake: a submission made inert before nbgrader or any renderer sees it.

Every byte a student submits is hostile markup. Formgrader renders a markdown cell as
``cell.source | markdown2html | strip_files_prefix`` with no sanitizing, in a page that holds the
instructor's Jupyter session (formgrader's REST API sets grades); the feedback page and the
gradebook's notebook are rendered from the same cells. So the notebook is rewritten once, here:

- **Markdown** keeps what honest answers use (headings, lists, emphasis, code, ``$math$``,
  tables, http/https/mailto links) and loses what acts: raw HTML and autolinks (every ``<`` and
  ``&`` outside code and math is escaped, so tags, comments and entities show as typed), images
  (an image becomes a link: it never loads by itself, and an ``attachment:`` one no longer makes
  nbconvert raise), link targets of any other scheme (``javascript:``, ``data:``,
  ``vbscript:``, ``attachment:``...: markdown links, images and reference definitions point to
  ``#``), and the MathJax commands that act (``\\href``, ``\\unicode``, ``\\class``, ``\\style``,
  ``\\cssId``, ``\\data``, ``\\require``...: their backslash dropped, their arguments shown as
  text). Then the cell is rendered as formgrader renders it and the HTML passed through nh3
  (Ammonia) with the allow-list of what markdown itself produces: if Ammonia would change one
  tag, attribute or link, or an acting MathJax command is still in the text, the whole cell is
  shown as a fenced code block instead (the renderer escapes code; MathJax skips it).
- **Size and nesting**: nbconvert's ``strip_files_prefix`` scans from every ``[`` to the end of
  its line (quadratic: 10 000 brackets on a line took a second per render). A cell's markdown is
  cut at MAX_CELL characters, the notebook's at MAX_NOTEBOOK, with a visible note; a line holds
  at most MAX_BRACKETS_PER_LINE ``[`` (the next starts a new line); bracket nesting deeper than
  MAX_NESTING, emphasis runs longer than MAX_EMPHASIS, and brackets or emphasis past a
  paragraph's first MAX_MARKS (mistune's emphasis and links grow with their square) are escaped
  (flat text). tests/benchmarks/bench_intake.py measures the worst patterns at the caps.
- **Outputs** are reduced to what this course's cells show: ``stream`` and ``error`` (plain
  text, which every template escapes), and ``display_data``/``execute_result`` with only
  ``text/plain``, ``image/png`` and ``image/jpeg`` (base64 checked: nbconvert puts it in a
  ``src`` attribute unescaped), no metadata (nbconvert writes image ``width``/``height``
  metadata into the tag unescaped). The course's cells print text and draw matplotlib figures;
  HTML, SVG, JavaScript, LaTeX, markdown and widget outputs are script carriers and are dropped.
- **Everything else a renderer reads**: attachments dropped; a raw cell (nbconvert copies one
  with no MIME type verbatim into the HTML) becomes a markdown code block; cell metadata keeps
  only ``nbgrader`` and plain tags; notebook metadata only a plain kernelspec and language.

This module handles student bytes, so it lives beside the sandbox and imports nothing of the
grader side. Intake is idempotent and never raises on a notebook nbformat accepted.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
from html.parser import HTMLParser

import nbformat

MAX_CELL = 8_000  # characters of one markdown cell (the course's longest is under 1 500)
MAX_NOTEBOOK = 64_000  # characters of markdown in a notebook (the course's: under 7 000)
MAX_BRACKETS_PER_LINE = 32
MAX_NESTING = 8  # [ and ( inside each other
MAX_EMPHASIS = 3  # *, _ or ~ in a row
MAX_MARKS = 64  # emphasis runs, and [ or ( , in one paragraph: mistune's work grows with the square of their number
CUT = "\n\n*[g2c: the rest of this cell ({removed} characters) was cut: markdown is limited to {limit} characters]*\n"
CUT_NOTEBOOK = "*[g2c: this cell's markdown was cut here: the notebook's markdown is limited to {limit} characters]*"
UNSAFE_NOTE = "*[g2c: this cell is shown as plain text: it held markup that could act in a browser]*\n\n"

IMAGES = ("image/png", "image/jpeg")  # matplotlib's figures; kept beside text/plain
LINK_SCHEMES = {"http", "https", "mailto"}
PLAIN_TAG = re.compile(r"^[\w.-]{1,64}$")
PLAIN_NAME = re.compile(r"^[\w .()+-]{0,64}$")
# MathJax commands that act (links, raw characters, CSS, ids, data attributes, extensions, raw HTML); \\+ so that an
# escaped backslash in front cannot leave one behind
ACTING_TEX = re.compile(r"\\+[ \t]*(href|unicode|class|style|cssId|data|require|html|mmlToken|bbox|url|Newextarrow)(?![A-Za-z])")
BASE64 = re.compile(r"^[A-Za-z0-9+/=\s]*$")

# What markdown produces, nothing more: Ammonia's allow-list for the verification of a rendered cell
TAGS = {"h1", "h2", "h3", "h4", "h5", "h6", "p", "br", "hr", "em", "strong", "del", "code", "pre", "blockquote", "ul", "ol",
        "li", "dl", "dt", "dd", "table", "thead", "tbody", "tr", "th", "td", "a", "div", "span", "input"}
ATTRIBUTES = {"h1": {"id"}, "h2": {"id"}, "h3": {"id"}, "h4": {"id"}, "h5": {"id"}, "h6": {"id"}, "a": {"href", "class"},
              "div": {"class"}, "span": {"class"}, "code": {"class"}, "ol": {"start"}, "th": {"style"}, "td": {"style"},
              "li": {"class"}, "ul": {"class"}, "input": {"class", "type", "disabled", "checked"}}


def inert_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` (changed in place) with every cell, output and metadata a renderer reads made inert."""
    nb.metadata = _plain_metadata(nb.metadata)
    budget = MAX_NOTEBOOK
    for index, cell in enumerate(nb.cells):
        cell.pop("attachments", None)
        cell.metadata = _cell_metadata(cell.metadata)
        if cell.cell_type == "raw":
            nb.cells[index] = cell = _raw_as_markdown(cell)
        if cell.cell_type == "markdown":
            if budget <= 0:
                cell.source = CUT_NOTEBOOK.format(limit=MAX_NOTEBOOK)
                continue
            over = len(cell.source) > budget
            cell.source = inert_markdown(cell.source[:budget])
            budget -= len(cell.source)
            if over:
                cell.source += "\n\n" + CUT_NOTEBOOK.format(limit=MAX_NOTEBOOK)
        elif cell.cell_type == "code":
            cell.outputs = inert_outputs(cell.get("outputs", []))
    return nb


def _plain_metadata(meta: dict) -> nbformat.NotebookNode:
    """A kernelspec and language of plain names; nothing else a student set (e.g. a page ``title``)."""
    kept = nbformat.NotebookNode()
    spec = meta.get("kernelspec")
    if isinstance(spec, dict) and all(_plain(spec.get(key)) for key in ("name", "display_name")):
        kept.kernelspec = nbformat.NotebookNode(name=spec["name"], display_name=spec["display_name"])
        if _plain(spec.get("language")):
            kept.kernelspec.language = spec["language"]
    info = meta.get("language_info")
    if isinstance(info, dict) and _plain(info.get("name")):
        kept.language_info = nbformat.NotebookNode(name=info["name"])
    return kept


def _plain(value) -> bool:
    return isinstance(value, str) and PLAIN_NAME.match(value) is not None


def _cell_metadata(meta: dict) -> nbformat.NotebookNode:
    kept = nbformat.NotebookNode()
    if isinstance(meta.get("nbgrader"), dict):
        kept.nbgrader = meta["nbgrader"]
    tags = meta.get("tags")
    if isinstance(tags, list):
        kept.tags = [tag for tag in tags if isinstance(tag, str) and PLAIN_TAG.match(tag)]
    return kept


def _raw_as_markdown(cell: nbformat.NotebookNode) -> nbformat.NotebookNode:
    new = nbformat.v4.new_markdown_cell(fenced(cell.source), metadata=cell.metadata)
    if "id" in cell:
        new.id = cell.id
    return new


# ---------------------------------------------------------------- outputs


def inert_outputs(outputs: list) -> list:
    """The outputs the course shows, each rebuilt from its plain fields (see the module's docstring)."""
    kept = []
    for output in outputs:
        if (node := inert_output(output)) is not None:
            kept.append(node)
    return kept


def inert_output(output) -> nbformat.NotebookNode | None:
    if not isinstance(output, dict):
        return None
    kind = output.get("output_type")
    if kind == "stream":
        name = output.get("name") if output.get("name") in ("stdout", "stderr") else "stdout"
        return nbformat.v4.new_output("stream", name=name, text=_text(output.get("text")))
    if kind == "error":
        traceback = output.get("traceback")
        lines = [line for line in traceback if isinstance(line, str)] if isinstance(traceback, list) else []
        return nbformat.v4.new_output("error", ename=_text(output.get("ename")), evalue=_text(output.get("evalue")),
                                      traceback=lines)
    if kind not in ("display_data", "execute_result"):
        return None
    data = output.get("data")
    kept = {}
    if isinstance(data, dict):
        if "text/plain" in data:
            kept["text/plain"] = _text(data["text/plain"])
        for mime in IMAGES:
            if (image := _base64(data.get(mime))) is not None:
                kept[mime] = image
    if not kept:
        return None
    if kind == "execute_result":
        count = output.get("execution_count")
        return nbformat.v4.new_output(kind, data=kept, execution_count=count if isinstance(count, int) else None)
    return nbformat.v4.new_output(kind, data=kept)


def _text(value) -> str:
    if isinstance(value, list):
        return "".join(item for item in value if isinstance(item, str))
    return value if isinstance(value, str) else ""


def _base64(value) -> str | None:
    """An image's base64 text, only if it is that (it lands inside a ``src="data:..."`` attribute)."""
    text = _text(value)
    if not text or not BASE64.match(text):
        return None
    try:
        base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    return text


# ---------------------------------------------------------------- markdown


def inert_markdown(source: str) -> str:
    """``source`` with nothing left that acts once rendered (see the module's docstring); idempotent."""
    source = source[:4 * MAX_CELL]  # nothing further can be kept
    keep, text = len(source), _inert(source)
    for _ in range(8):  # escapes lengthen the text: cut the source until the result fits
        if len(text) <= MAX_CELL:
            break
        keep = keep * (MAX_CELL - 400) // len(text)
        text = _inert(source[:keep])
    note = CUT.format(removed=len(source) - keep, limit=MAX_CELL) if keep < len(source) else ""
    if len(text) <= MAX_CELL and _renders_inert(text):
        return text + note
    shown = UNSAFE_NOTE + fenced(source[:min(keep, MAX_CELL // 2)])
    return shown + note if _renders_inert(shown) else UNSAFE_NOTE.strip()


def _inert(source: str) -> str:
    source = ACTING_TEX.sub(r"\1", source)
    text = "".join(piece if protected else _prose(piece) for protected, piece in _pieces(source))
    return _short_bracket_lines(text)


def fenced(text: str) -> str:
    """``text`` as a fenced code block whose fence no line of it can close."""
    runs = [len(run) for run in re.findall(r"`{3,}", text)]
    fence = "`" * max([3, *(n + 1 for n in runs)])
    return _short_bracket_lines(fence + "text\n" + ACTING_TEX.sub(r"\1", text) + "\n" + fence)


def _pieces(text: str) -> list[tuple[bool, str]]:
    """(protected, piece) in order: code blocks, code spans and math are protected; the rest is prose.

    A plain scanner, not a markdown parser: where it errs, the rendered cell fails the
    verification and is shown as code. Each closer that is missing is searched once (linear).
    """
    pieces: list[tuple[bool, str]] = []
    n, i, start = len(text), 0, 0
    absent: dict[str, int] = {}  # closer -> a position after which it does not occur

    def find(closer: str, frm: int) -> int:
        if absent.get(closer, n + 1) <= frm:
            return -1
        j = text.find(closer, frm)
        if j < 0:
            absent[closer] = min(frm, absent.get(closer, n + 1))
        return j

    def protect(end: int) -> None:
        nonlocal i, start
        if start < i:
            pieces.append((False, text[start:i]))
        pieces.append((True, text[i:end]))
        i = start = end

    while i < n:
        char = text[i]
        at_line_start = i == 0 or text[i - 1] == "\n"
        if at_line_start and (fence := re.match(r"[ \t]{0,3}(`{3,}|~{3,})", text[i:i + 200])):
            closer = re.compile(r"^[ \t]{0,3}" + re.escape(fence.group(1)) + r"[ \t]*$", re.M)
            line_end = text.find("\n", i)
            found = closer.search(text, line_end + 1) if line_end >= 0 else None
            protect(found.end() if found else n)
            continue
        if char == "\\":
            closer = {"\\[": "\\\\]", "\\(": "\\\\)"}.get(text[i + 1:i + 3])  # nbconvert's \\( and \\[ (markdown eats one)
            env = re.match(r"\\begin\{([a-z]*\*?)\}", text[i:i + 80])
            if env:
                closer = f"\\end{{{env.group(1)}}}"
            j = find(closer, i + 2) if closer else -1
            if j >= 0:
                protect(j + len(closer))
            else:
                i += 2
            continue
        if char == "$":
            closer = "$$" if text.startswith("$$", i) else "$"
            j = find(closer, i + len(closer))
            if j >= 0:
                protect(j + len(closer))
            else:
                i += len(closer)
            continue
        if char == "`":
            run = len(text) - len(text[i:].lstrip("`")) if i + 1 < n and text[i + 1] == "`" else 1
            run = min(run, n - i)
            j = find("`" * run, i + run)
            if j >= 0:
                protect(j + run)
            else:
                i += run
            continue
        i += 1
    if start < n:
        pieces.append((False, text[start:]))
    return pieces


TARGET = r"(<[^<>\n]*>|(?:[^()\s]|\([^()\s]*\))*)"  # <anything> or text with balanced parentheses
LINK_TARGET = re.compile(r"(\]\(\s*)" + TARGET)  # [text](target "title")
REFERENCE = re.compile(r"^([ \t]{0,3}\[[^\]\n]+\]:[ \t]*)" + TARGET, re.M)  # [label]: target
IMAGE = re.compile(r"!\[")


def _prose(text: str) -> str:
    """Markdown outside code and math: no raw HTML, no entities, no images, safe link targets, flat nesting."""
    text = LINK_TARGET.sub(lambda m: m.group(1) + _safe_target(m.group(2)), text)
    text = REFERENCE.sub(lambda m: m.group(1) + _safe_target(m.group(2)), text)
    text = IMAGE.sub("[image: ", text)
    text = re.sub(r"\\[\s\S]|[<&]", lambda m: m.group() if len(m.group()) == 2 else "\\" + m.group(), text)
    return _flat(text)


def _safe_target(url: str) -> str:
    """A link target of an allowed scheme (or none: relative), else ``#``."""
    plain = re.sub(r"[\x00-\x20\\<>]", "", html.unescape(url)).lower()
    scheme = re.match(r"([a-z][a-z0-9+.-]*):", plain)
    if re.match(r"[^a-z0-9/#?.]", plain[:1]) or (scheme and scheme.group(1) not in LINK_SCHEMES):
        return "#"
    return url


def _flat(text: str) -> str:
    """Brackets nested deeper than MAX_NESTING, emphasis runs longer than MAX_EMPHASIS, and either past the
    paragraph's first MAX_MARKS, escaped: flat text."""
    out, depth, brackets, runs = [], 0, 0, 0
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "\\":
            out.append(text[i:i + 2])
            i += 2
            continue
        if char == "\n" and text[i + 1:i + 2] == "\n":  # a paragraph ends: inline nesting and counts with it
            depth = brackets = runs = 0
        if char in "*_~":
            j = i
            while j < n and text[j] == char:
                j += 1
            run, runs = j - i, runs + 1
            out.append(char * run if run <= MAX_EMPHASIS and runs <= MAX_MARKS else ("\\" + char) * run)
            i = j
            continue
        if char in "[(":
            depth, brackets = depth + 1, brackets + 1
            out.append("\\" + char if depth > MAX_NESTING or brackets > MAX_MARKS else char)
        elif char in "])":
            out.append("\\" + char if depth > MAX_NESTING or brackets > MAX_MARKS else char)
            depth = max(0, depth - 1)
        else:
            out.append(char)
        i += 1
    return "".join(out)


def _short_bracket_lines(text: str) -> str:
    """No line with more than MAX_BRACKETS_PER_LINE ``[``: the next one starts a new line."""
    if text.count("[") <= MAX_BRACKETS_PER_LINE:
        return text
    lines = []
    for line in text.split("\n"):
        while line.count("[") > MAX_BRACKETS_PER_LINE:
            cut = _nth(line, "[", MAX_BRACKETS_PER_LINE + 1)
            backslashes = len(line[:cut]) - len(line[:cut].rstrip("\\"))
            cut -= backslashes % 2  # an escaped bracket moves with its backslash
            lines.append(line[:cut])
            line = line[cut:]
        lines.append(line)
    return "\n".join(lines)


def _nth(text: str, char: str, k: int) -> int:
    i = -1
    for _ in range(k):
        i = text.find(char, i + 1)
    return i


# ---------------------------------------------------------------- the verification


def _renders_inert(text: str) -> bool:
    """Rendered as formgrader renders it, the cell holds only what Ammonia's allow-list keeps, and no
    acting MathJax command in its text."""
    import nh3
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    try:
        rendered = markdown2html_mistune(text)
    except Exception:  # nbconvert refuses it (e.g. a missing attachment): shown as code
        return False
    cleaned = nh3.clean(rendered, tags=TAGS, attributes=ATTRIBUTES, url_schemes=LINK_SCHEMES, link_rel=None,
                        strip_comments=True, filter_style_properties={"text-align"}, clean_content_tags=set())
    shape = _Shape.of(rendered)
    return shape.ok and shape.tags == _Shape.of(cleaned).tags and not ACTING_TEX.search(shape.text)


class _Shape(HTMLParser):
    """The start tags of an HTML text (name, attributes), its text, and whether it held anything else."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list]] = []
        self.parts: list[str] = []
        self.ok = True

    @classmethod
    def of(cls, text: str) -> _Shape:
        shape = cls()
        shape.feed(text)
        shape.close()
        return shape

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def handle_starttag(self, tag, attrs) -> None:
        norm = sorted((name, re.sub(r"[\s;]", "", value or "") if name == "style" else value or "") for name, value in attrs)
        self.tags.append((tag, norm))

    def handle_startendtag(self, tag, attrs) -> None:
        self.handle_starttag(tag, attrs)

    def handle_data(self, data) -> None:
        self.parts.append(data)

    def handle_comment(self, data) -> None:
        self.ok = False

    def handle_decl(self, decl) -> None:
        self.ok = False

    def handle_pi(self, data) -> None:
        self.ok = False

    def unknown_decl(self, data) -> None:
        self.ok = False

"""Our two nbgrader preprocessors: sandboxed execution for autograde, hidden tests for feedback.

* :class:`SandboxedExecute` takes the place of nbgrader's ``Execute`` in the autograde
  pipeline that ``grade`` runs. nbgrader itself still reads the submission, sanitises it
  (ClearOutput, DeduplicateIds, OverwriteKernelspec, OverwriteCells with
  ``add_missing_cells``, CheckCellMetadata), applies IgnorePattern, LimitOutput, saves the
  grades and late penalties and writes the autograded notebook. The execution itself was
  done ahead of time, in parallel, in sandboxed kernels, and the trusted verdicts written
  into the test cells; this step puts those outputs into nbgrader's notebook after checking
  that its cells are exactly the ones that were run (else it asks for a run now).
* :class:`HideHiddenTests` is added to ``generate_feedback`` (nbgrader_config.py): the
  source of hidden test regions is cut from test cells, tracebacks of test cells are
  reduced to their message, and any text of a hidden test that a learner's code managed to
  print anywhere in the notebook is redacted. It also makes the feedback read well: a test's
  diagnosis is shown as wrapped, rendered text (markdown) instead of a one-line traceback
  box, and the grader's own paths (the sandbox image, the Python installation) are cut from
  tracebacks.
* :class:`GetGradesPending` is nbgrader's ``GetGrades`` that also says, at the top of the
  feedback and on each answer, which written answers are still to be graded by hand.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Callable
from pathlib import Path

import nbformat
from nbgrader.preprocessors import DeduplicateIds, Execute, GetGrades, NbGraderPreprocessor
from traitlets import Unicode

BEGIN = "BEGIN HIDDEN TESTS"
END = "END HIDDEN TESTS"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# the grader's own paths in a traceback: the sandbox image (<course>/.grading/images/<id>/)
# and the Python installation (.../site-packages/); what follows them is kept
IMAGE_PATH = re.compile(r"(?:/[^\s/\"'<>:]+)*/\.grading/images/[^/\s\"'<>]+/")
SITE_PATH = re.compile(r"(?:/[^\s/\"'<>:]+)+/((?:site|dist)-packages)/")
EMPHASIS = re.compile(r"(?<![\w*])\*{1,2}([^*\n]+?)\*{1,2}(?![\w*])")
STRONG = re.compile(r"(?<![\w*])\*\*([^*\n]+?)\*\*(?![\w*])")
CODE = re.compile(r"`([^`\n]+)`")


def fingerprint(nb) -> str:
    """What was run: every cell's type, grade id and source."""
    digest = hashlib.sha256()
    for cell in nb.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")
        digest.update(json.dumps([cell.cell_type, grade_id, cell.source]).encode())
    return digest.hexdigest()


class SandboxedExecute(Execute):
    """Splice in the outputs of the sandboxed run of this very notebook."""

    results_dir = Unicode("", help="where the worker pool left each learner's run").tag(
        config=True)

    # set by the grading pipeline: run this notebook now (student, nb) -> executed nb
    execute_now: Callable | None = None

    def preprocess(self, nb, resources):
        student = resources["nbgrader"]["student"]
        path = Path(self.results_dir) / f"{student}.json"
        executed = None
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("fingerprint") == fingerprint(nb):
                import nbformat

                executed = nbformat.from_dict(data["notebook"])
        if executed is None:
            if SandboxedExecute.execute_now is None:
                raise RuntimeError(f"no sandboxed run of {student}'s notebook to use")
            executed = SandboxedExecute.execute_now(student, nb)
        for cell, done in zip(nb.cells, executed.cells, strict=True):
            if cell.cell_type == "code":
                cell.outputs = done.get("outputs", [])
                cell.execution_count = done.get("execution_count")
        widgets = executed.metadata.get("widgets")
        if widgets:
            nb.metadata["widgets"] = widgets
        return nb, resources


def reuse_exporter(converter):
    """Make ``converter.start()`` build its exporter (and writer, and preprocessors) once.

    nbgrader's ``BaseConverter.start`` makes a new exporter each call; one ``nbgrader
    autograde`` or ``generate_feedback`` run over a class calls it once and the exporter
    serves every learner. ``grade`` calls ``start`` once per learner (as each run is ready),
    so without this the HTML template would be compiled and every preprocessor configured
    again for each learner. The exporter, preprocessors and template are exactly those
    ``start`` makes."""
    import os
    import types

    from nbconvert.writers import FilesWriter

    def build(self) -> None:
        """The exporter, writer and preprocessors ``start`` makes, and the exporter's
        template loaded and compiled (as its first page would)."""
        if getattr(self, "_attnlab_exporter", None) is None:
            self.writer = FilesWriter(parent=self, config=self.config)
            self.exporter = self.exporter_class(parent=self, config=self.config)
            for pp in self.preprocessors:
                self.exporter.register_preprocessor(pp)
            share_highlighting(self.exporter)
            share_soup(self.exporter)
            self.exporter.template  # noqa: B018  (loads and compiles it)
            self._attnlab_exporter = self.exporter

    def start(self) -> None:
        self.init_notebooks()
        self.build()
        currdir = os.getcwd()
        os.chdir(self.coursedir.root)
        try:
            self.convert_notebooks()
        finally:
            os.chdir(currdir)

    converter.start = types.MethodType(start, converter)
    converter.build = types.MethodType(build, converter)
    return converter


def warm_exporter(converter, nb) -> None:
    """Render ``nb`` (the lesson) once with a reuse_exporter converter's exporter, its
    gradebook preprocessors left out, and throw the page away: what a first page costs
    (the templates compiled, pygments' lexers and nbformat's validator built, the lesson's
    cells highlighted and parsed into the shared caches) is then paid here, in grade's
    first worker before it forks the others. The caches are keyed by content, so what
    they remember of this page is what any page with those cells would get."""
    converter.build()
    exporter = converter.exporter
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    for cell in nb.cells:  # what nbgrader's GetGrades would have added
        meta = cell.get("metadata", {}).get("nbgrader")
        if meta is not None:
            meta.setdefault("score", 0.0)
            meta.setdefault("points", 0.0)
    saved = exporter._preprocessors
    exporter._preprocessors = [pp for pp in saved if not isinstance(pp, NbGraderPreprocessor)]
    try:
        exporter.from_notebook_node(nb, resources={"nbgrader": {
            "notebook": "lesson", "score": 0.0, "max_score": 0.0, "late_penalty": 0.0}})
    finally:
        exporter._preprocessors = saved


class SharedHighlight:
    """nbconvert's ``highlight_code`` filter (a ``Highlight2HTML``, made by the HTML exporter
    for each notebook with that notebook's lexer), remembering what it returned.

    Highlighting is a pure function of the source, the language, the cell's metadata (its
    ``magics_language``), the lexer and the formatter options: all are the cache key, so a
    cell every learner has unchanged (the lesson's text, locked and test cells) is run
    through pygments once per worker instead of once per learner; the HTML is the same."""

    def __init__(self, highlight, cache: dict):
        self.highlight, self.cache = highlight, cache

    def __call__(self, source, language=None, metadata=None):
        key = (getattr(self.highlight, "pygments_lexer", None),
               json.dumps(getattr(self.highlight, "extra_formatter_options", None),
                          sort_keys=True, default=repr),
               source, language, json.dumps(metadata, sort_keys=True, default=repr))
        found = self.cache.get(key)
        if found is None:
            found = self.highlight(source, language=language, metadata=metadata)
            if len(self.cache) >= 4096:  # a class's distinct answers: bounded
                self.cache.clear()
            self.cache[key] = found
        return found


def share_highlighting(exporter) -> None:
    """Make an HTML exporter's per-notebook ``highlight_code`` filter a SharedHighlight
    (one cache for every notebook this exporter converts)."""
    from nbconvert.filters.highlight import Highlight2HTML

    register, cache = exporter.register_filter, {}

    def register_filter(name, jinja_filter):
        if name == "highlight_code" and type(jinja_filter) is Highlight2HTML:
            jinja_filter = SharedHighlight(jinja_filter, cache)
        return register(name, jinja_filter)

    exporter.register_filter = register_filter


class SoupPass:
    """The end of nbconvert's ``HTMLExporter.from_notebook_node``: the rendered page parsed
    with BeautifulSoup (``html.parser``), images given alt text, inputs and outputs made
    focusable, the tree serialised again.

    A feedback page is the lesson's cells, most of them the same for every learner, so the
    pass is done per cell and remembered: the page is cut before each cell's
    ``<div [id="cell-id=..."] class="cell border-box-sizing ...">`` (nbconvert's classic
    template, which nbgrader's feedback template extends); the page without its cells is
    parsed with a marker comment where they were, which gives the open elements around the
    cells and the serialised text before and after them; each cell is parsed inside those elements
    (their names and attributes) followed by the marker. A cell whose marker ends up a
    direct child of the innermost of those elements opened and closed only its own
    elements, so html.parser and BeautifulSoup build it exactly as within the whole page
    (the tree builder's state is the stack of open elements' names), and the page is the
    concatenation. Anything else (a cell that leaves an element open or closes one of the
    page's, an unclosed script, an end tag of a void element, which BeautifulSoup
    remembers across the page, the marker in the page) and the whole page takes
    nbconvert's own pass. The result is the same string (tests/test_grading_units.py)."""

    CELLS = r'<div (?:id="[^"<>]*" )?class="cell border-box-sizing '
    MARK = "attnlab-soup-cells"
    VOID_END = None  # compiled on first use: an end tag of any void element
    LIMIT = 64 << 20  # characters remembered per worker (a class's distinct cells)

    def __init__(self) -> None:
        self.cache: dict[tuple[str, str], tuple[str, int]] = {}
        self.size = 0

    def __call__(self, page: str) -> tuple[str, int]:
        """(the page after the pass, how many images got alt text)."""
        import re

        if SoupPass.VOID_END is None:
            from bs4.builder import HTMLParserTreeBuilder

            names = "|".join(sorted(HTMLParserTreeBuilder.DEFAULT_EMPTY_ELEMENT_TAGS))
            SoupPass.VOID_END = re.compile(rf"</\s*(?:{names})(?![-.\w:])", re.IGNORECASE)
        starts = [m.start() for m in re.finditer(self.CELLS, page)]
        if len(starts) < 2 or self.MARK in page or self.VOID_END.search(page):
            return self.whole(page)
        outer, missing = self._parse(page[:starts[0]] + f"<!--{self.MARK}-->" +
                                     page[starts[-1]:])
        marks = self._marks(outer)
        if len(marks) != 1:
            return self.whole(page)
        around = [tag for tag in marks[0].parents if tag is not outer]  # innermost first
        head, _, tail = str(outer).partition(f"<!--{self.MARK}-->")
        opening = "".join(_start_tag(tag) for tag in reversed(around))
        body = []
        for start, end in zip(starts, starts[1:], strict=False):
            cell = page[start:end]
            done = self.cache.get((opening, cell))
            if done is None:
                done = self._cell(opening, len(around), cell)
                if done is None:
                    return self.whole(page)
                if self.size + len(cell) + len(done[0]) > self.LIMIT:
                    self.cache.clear()
                    self.size = 0
                self.cache[(opening, cell)] = done
                self.size += len(cell) + len(done[0])
            body.append(done[0])
            missing += done[1]
        return head + "".join(body) + tail, missing

    def _cell(self, opening: str, depth: int, cell: str) -> tuple[str, int] | None:
        if not depth:  # cells at the top of the page: no element to parse them in
            return None
        soup, missing = self._parse(opening + cell + f"<!--{self.MARK}-->")
        marks = self._marks(soup)
        innermost = soup
        for _ in range(depth):  # the opening elements: each the first child of the last
            innermost = innermost.contents[0] if innermost.contents else None
            if innermost is None or getattr(innermost, "name", None) is None:
                return None
        if len(marks) != 1 or marks[0].parent is not innermost:
            return None
        text = innermost.decode()
        end = f"<!--{self.MARK}--></{innermost.name}>"
        if not text.endswith(end) or ">" not in text:
            return None
        return text[text.index(">") + 1:-len(end)], missing

    @staticmethod
    def _parse(html: str):
        """What nbconvert does to the page: parse, alt text, tabindex."""
        from bs4 import BeautifulSoup

        soup = BeautifulSoup(html, features="html.parser")
        missing = 0
        for elem in soup.select("img:not([alt])"):
            elem.attrs["alt"] = "No description has been provided for this image"
            missing += 1
        for elem in soup.select(".jp-Notebook div.jp-Cell-inputWrapper"):
            elem.attrs["tabindex"] = "0"
        for elem in soup.select(".jp-Notebook div.jp-OutputArea-output"):
            elem.attrs["tabindex"] = "0"
        return soup, missing

    def _marks(self, soup) -> list:
        from bs4 import Comment

        return soup.find_all(string=lambda s: isinstance(s, Comment) and s == self.MARK)

    def whole(self, page: str) -> tuple[str, int]:
        soup, missing = self._parse(page)
        return str(soup), missing


def _start_tag(tag) -> str:
    import html as html_

    attrs = "".join(
        f' {key}="{html_.escape(" ".join(v) if isinstance(v, list) else str(v), quote=True)}"'
        for key, v in tag.attrs.items())
    return f"<{tag.name}{attrs}>"


def share_soup(exporter) -> None:
    """Give an HTML exporter nbconvert's own ``from_notebook_node`` with its closing
    BeautifulSoup pass done by a SoupPass (one per exporter, so per worker)."""
    import types

    from nbconvert.exporters.templateexporter import TemplateExporter
    from nbconvert.filters.highlight import Highlight2HTML
    from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter

    soup_pass = SoupPass()

    def from_notebook_node(self, nb, resources=None, **kw):
        # nbconvert 7's HTMLExporter.from_notebook_node, line for line, up to its soup
        langinfo = nb.metadata.get("language_info", {})
        lexer = langinfo.get("pygments_lexer", langinfo.get("name", None))
        highlight_code = self.filters.get(
            "highlight_code", Highlight2HTML(pygments_lexer=lexer, parent=self))
        resources = self._init_resources(resources)
        filter_data_type = WidgetsDataTypeFilter(
            notebook_metadata=self._nb_metadata, parent=self, resources=resources)
        self.register_filter("highlight_code", highlight_code)
        self.register_filter("filter_data_type", filter_data_type)
        html, resources = TemplateExporter.from_notebook_node(self, nb, resources, **kw)
        html, missing_alt = soup_pass(html)
        if missing_alt:
            self.log.warning("Alternative text is missing on %s image(s).", missing_alt)
        return html, resources

    exporter.from_notebook_node = types.MethodType(from_notebook_node, exporter)
    exporter.soup_pass = soup_pass


def register_lesson(assignment: str, student: str, notebooks) -> None:
    """Plain ``nbgrader autograde``'s pre-convert hook (nbgrader_config.py): a gradebook that
    does not know the lesson yet (a fresh clone) gets it from ``solutions/``, as ``grade``
    does, instead of failing until ``generate_assignment --force`` is run by hand.

    The course folder is the one the submissions are in (``<course>/submitted/<student>/
    <lesson>/<notebook>``, the hub's as well as a clone's), its gradebook ``gradebook.db``."""
    from nbgrader.api import Gradebook, MissingEntry

    from ..course import CourseError, nbgrader_config
    from .pipeline import _ensure_assignment, _find_lesson

    if not notebooks:
        return
    course = Path(notebooks[0]).resolve().parents[3]
    if not (course / "solutions" / assignment).is_dir():
        return  # not laid out as this course is: nbgrader says what is missing
    config = nbgrader_config(course)
    with Gradebook(config.CourseDirectory.db_url, config.CourseDirectory.course_id) as gb:
        try:
            gb.find_assignment(assignment)
            return
        except MissingEntry:
            pass
    try:
        lesson = _find_lesson(course, assignment)
    except CourseError:
        return  # not one of ours: nbgrader says what is missing
    state = course / ".grading" / lesson.name
    state.mkdir(parents=True, exist_ok=True)
    _ensure_assignment(course, lesson, config, state)


class DropDuplicateIds(DeduplicateIds):
    """nbgrader's DeduplicateIds (the last copy of a cell keeps its id), but the earlier
    copies lose their ``nbgrader`` metadata entirely instead of keeping an empty dict, which
    ``OverwriteCells(add_missing_cells=True)`` cannot read (KeyError 'grade_id')."""

    def preprocess(self, nb, resources):
        nb, resources = super().preprocess(nb, resources)
        for cell in nb.cells:
            if cell.get("metadata", {}).get("nbgrader", None) == {}:
                del cell.metadata["nbgrader"]
        return nb, resources


def _hidden_lines(source: str) -> tuple[str, list[str]]:
    """The source without its hidden regions, and the hidden lines."""
    kept, hidden, inside = [], [], False
    for line in source.splitlines():
        if BEGIN in line:
            inside = True
            continue
        if END in line:
            inside = False
            continue
        (hidden if inside else kept).append(line)
    return "\n".join(kept), hidden


class HideHiddenTests(NbGraderPreprocessor):
    """Feedback never shows hidden tests: neither their source nor their tracebacks."""

    placeholder = Unicode("# (hidden tests)", help="what replaces a hidden region").tag(
        config=True)

    def preprocess(self, nb, resources):
        secrets: set[str] = set()
        for cell in nb.cells:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if not (meta.get("grade") and not meta.get("solution")):
                continue
            if BEGIN in cell.source:
                kept, hidden = _hidden_lines(cell.source)
                secrets |= {ln.strip() for ln in hidden if len(ln.strip()) >= 6
                            and not ln.strip().startswith("#")}
                cell.source = (kept.rstrip() + "\n" + self.placeholder).lstrip("\n")
            if cell.cell_type == "code":
                cell.outputs = [_readable_verdict(out) for out in cell.get("outputs", [])]
                for out in cell.outputs:
                    if out.get("output_type") == "error":
                        text = ANSI.sub("", f"{out.get('ename', '')}: {out.get('evalue', '')}")
                        out["traceback"] = [text]
        for cell in nb.cells:
            for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
                if secrets:
                    _redact(out, secrets)
                _strip_paths(out)
        return nb, resources


def _readable_verdict(out):
    """A failed check's diagnosis (verdict.py's ``CheckFailed``) as rendered, wrapped text:
    a traceback box is one long line that scrolls sideways and shows markdown literally."""
    if out.get("output_type") != "error" or out.get("ename") != "CheckFailed":
        return out
    message = ANSI.sub("", str(out.get("evalue", ""))).strip()
    plain = CODE.sub(r"\1", EMPHASIS.sub(r"\1", message))
    return nbformat.v4.new_output("display_data", data={
        "text/html": f"\u2717 <strong>Not yet:</strong> {_inline_markdown(message)}",
        "text/plain": f"\u2717 Not yet: {plain}"})


def _inline_markdown(text: str) -> str:
    """The few inline marks the checks' messages use (*emphasis*, **strong**, `code`) as
    HTML that survives the feedback's sanitiser (which drops block tags such as <p>)."""
    parts = CODE.split(html.escape(text, quote=False))
    for i in range(0, len(parts), 2):  # outside code spans
        parts[i] = STRONG.sub(r"<strong>\1</strong>", parts[i])
        parts[i] = EMPHASIS.sub(r"<em>\1</em>", parts[i])
    for i in range(1, len(parts), 2):
        parts[i] = f"<code>{parts[i]}</code>"
    return "".join(parts)


def _strip_paths(out) -> None:
    """The grader's server paths are not the learner's business (nor anyone's)."""
    def strip(text: str) -> str:
        return SITE_PATH.sub(r"\1/", IMAGE_PATH.sub("", text))

    if "text" in out:
        out["text"] = strip(str(out["text"]))
    if "traceback" in out:
        out["traceback"] = [strip(str(t)) for t in out["traceback"]]
    if "evalue" in out:
        out["evalue"] = strip(str(out["evalue"]))
    data = out.get("data")
    if isinstance(data, dict) and isinstance(data.get("text/plain"), str):
        data["text/plain"] = strip(data["text/plain"])


class GetGradesPending(GetGrades):
    """nbgrader's GetGrades, and a word on written answers still waiting for a grade.

    nbgrader shows an ungraded written answer as "Score: 0.0 / 2.0" like a wrong one; here
    the top of the feedback lists the answers an instructor has not graded yet, and each of
    them says so (until formgrader's grade is in and the feedback is refreshed:
    ``python -m autograder feedback --lesson NN``)."""

    def preprocess(self, nb, resources):
        self._pending: list[tuple[str, float]] = []
        nb, resources = super().preprocess(nb, resources)
        if self._pending:
            points = sum(p for _, p in self._pending)
            nb.cells.insert(0, nbformat.v4.new_markdown_cell(
                f"**Still to be graded by your instructor:** {len(self._pending)} written "
                f"answer(s) worth {points:g} point(s) in all "
                f"({', '.join(name for name, _ in self._pending)}). They count as 0 in the "
                "score below until then; this page is updated once they are graded.",
                id="attnlab-pending-note"))
        resources["nbgrader"]["pending_manual"] = [name for name, _ in self._pending]
        return nb, resources

    def _get_score(self, cell, resources) -> None:
        super()._get_score(cell, resources)
        grade = self.gradebook.find_grade(cell.metadata["nbgrader"]["grade_id"],
                                          self.notebook_id, self.assignment_id,
                                          self.student_id)
        if grade.needs_manual_grade:
            self._pending.append((grade.name, float(grade.max_score)))
            if not cell.metadata.nbgrader.get("comment"):
                cell.metadata.nbgrader["comment"] = ("*Not graded yet: your instructor "
                                                     "grades this answer by hand.*")


def _redact_text(text: str, secrets: set[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "[hidden test]")
    return text


def _redact(out, secrets: set[str]) -> None:
    if "text" in out:
        out["text"] = _redact_text(str(out["text"]), secrets)
    for key in ("evalue",):
        if key in out:
            out[key] = _redact_text(str(out[key]), secrets)
    if "traceback" in out:
        out["traceback"] = [_redact_text(str(t), secrets) for t in out["traceback"]]
    data = out.get("data")
    if isinstance(data, dict):
        for mime, value in list(data.items()):
            if mime.startswith("text/") or mime.endswith("json"):
                if isinstance(value, list):
                    value = "".join(map(str, value))
                if isinstance(value, str):
                    data[mime] = _redact_text(value, secrets)

"""Do the pieces of `grade` hold on their own? (No kernels here: fast.)"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autograder.checks import REGISTRY as REAL
from autograder.course import ROOT, find_lesson, lessons
from autograder.grading import codec, collect, trusted, verdict
from autograder.grading.journal import Journal
from autograder.grading.nbgrader_hooks import (
    DropDuplicateIds,
    HideHiddenTests,
    SoupPass,
    share_highlighting,
    share_soup,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/grading_fixtures
from grading_fixtures.submissions import CORRECT, LESSON, notebook  # noqa: E402

CORE = trusted.core()


def softmax(x, axis=-1):
    z = x - x.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def _wire(record):
    """A record as it travels: encoded in the kernel, JSON, decoded by the grader."""
    return codec.decode(json.loads(json.dumps(codec.encode(record))), CORE)


def _cell(source: str, outputs=()):
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True,
                                 "grade_id": "t", "points": 1.0}
    cell.outputs = list(outputs)
    return cell


def _record_output(check_id: str, record=None, error=None):
    payload = {"check": check_id}
    if error is None:
        payload["record"] = codec.encode(record)
    else:
        payload["error"] = error
    return nbformat.v4.new_output("display_data", data={codec.MIME: payload})


# ----------------------------------------------------------------------------- the wire


def test_records_survive_the_wire():
    """Does a real record come back equal after encoding, JSON and decoding?"""
    record = REAL["softmax.values"].record(softmax)
    back = _wire(record)
    assert set(back) == set(record)
    for key, outcome in record.items():
        assert isinstance(back[key], CORE.Outcome)
        np.testing.assert_array_equal(back[key].value, outcome.value)
    trusted.load("01")["softmax.values"].compare(back)  # passes


@pytest.mark.parametrize("payload, why", [
    ({"__array__": {"dtype": "|O", "shape": [1], "b64": ""}}, "dtype"),
    ({"__array__": {"dtype": "<f8", "shape": [3], "b64": "AAAA"}}, "size"),
    ({"__array__": {"dtype": "<f8", "shape": [-1], "b64": ""}}, "shape"),
    ({"__pickle__": "gASVBQAAAAAAAAB9lC4="}, "unknown"),
    ({"__outcome__": {"value": 1}}, "outcome"),
    ({"__outcome__": {"value": 1, "error": 3, "error_type": None, "forbidden": [],
                      "mutated": []}}, "field"),
    ({"__float__": "__import__('os')"}, "float"),
])
def test_malformed_records_are_refused(payload, why):
    """Is a hand-made record that is not plain data refused instead of trusted?"""
    with pytest.raises(codec.RecordError, match=why):
        codec.decode(payload, CORE)


def test_anything_else_becomes_opaque():
    """Does a learner's odd return value travel as (type name, repr) and nothing more?"""
    class Sneaky:
        def __repr__(self):
            return "sneaky"
    back = _wire({"x": Sneaky(), "y": {1, 2}, "z": float("nan")})
    assert isinstance(back["x"], CORE.Opaque) and back["x"].type_name == "Sneaky"
    assert back["x"].text == "Sneaky"  # its __repr__ is never run in the grader
    assert np.isnan(back["z"])


# ----------------------------------------------------------------------------- verdicts


def test_check_only_cells_are_recognised():
    """Is a test cell of check calls judged by the grader, and anything else left alone?"""
    assert verdict.check_calls('check("a.b", f)\n### BEGIN HIDDEN TESTS\ncheck("a.c", f)\n'
                               "### END HIDDEN TESTS\n") == ["a.b", "a.c"]
    assert verdict.check_calls("# only a comment\ncheck('x', (f, g))") == ["x"]
    for source in ("assert f(1) == 2", 'check("a", f)\nprint(1)', 'check(name, f)', "",
                   'check("a", f, extra=1)', "def check(): pass"):
        assert verdict.check_calls(source) is None, source


def test_a_correct_record_passes_and_prints_only_the_verdict():
    """Does a correct record pass, replacing whatever the kernel printed?"""
    registry = trusted.load("01")
    record = REAL["softmax.values"].record(softmax)
    cell = _cell('check("softmax.values", softmax)', [
        nbformat.v4.new_output("stream", name="stderr", text="UserWarning: noise\n"),
        _record_output("softmax.values", record)])
    result = verdict.judge_cell(cell, registry, CORE)
    assert result.passed and result.trusted
    assert [o.output_type for o in cell.outputs] == ["stream"]
    assert cell.outputs[0].text.startswith("\u2713 softmax")


@pytest.mark.parametrize("outputs, message", [
    ([nbformat.v4.new_output("stream", name="stdout", text="\u2713 passed\n")],
     "did your code redefine"),
    ([nbformat.v4.new_output("error", ename="NameError",
                             evalue="name 'softmax' is not defined", traceback=[])],
     "did you run, rename or delete"),
    ([_record_output("softmax.values", error="TypeError: boom")], "could not run your code"),
    ([_record_output("softmax.values", {"not": "a real record"})],
     "not what the check expects"),
    ([_record_output("softmax.values", REAL["softmax.values"].record(softmax))] * 2,
     "more than one result"),
    ([_record_output("softmax.values", REAL["softmax.values"].record(np.zeros_like))],
     "Your softmax"),
])
def test_missing_forged_or_wrong_records_fail(outputs, message):
    """Does every way a record can be missing, forged or wrong fail with its reason?"""
    cell = _cell('check("softmax.values", softmax)', outputs)
    result = verdict.judge_cell(cell, trusted.load("01"), CORE)
    assert result.passed is False and message in result.message
    assert cell.outputs[-1].output_type == "error"
    assert cell.outputs[-1].traceback == [f"\x1b[0;31mNot yet: {result.message}\x1b[0m"]


def test_monkeypatched_numpy_cannot_help_in_the_grader(monkeypatch):
    """Is the comparison immune to what the learner's kernel did to numpy (it is not here)?"""
    record = REAL["softmax.values"].record(lambda x, axis=-1: np.zeros_like(x))
    wire = json.loads(json.dumps(codec.encode(record)))
    cell = _cell('check("softmax.values", softmax)', [nbformat.v4.new_output(
        "display_data", data={codec.MIME: {"check": "softmax.values", "record": wire}})])
    assert verdict.judge_cell(cell, trusted.load("01"), CORE).passed is False


# ----------------------------------------------------------------------------- feedback


def test_feedback_hides_hidden_tests_but_keeps_their_messages():
    """Are hidden sources cut, tracebacks reduced and printed copies redacted?"""
    test = _cell('check("x.visible", f)\n### BEGIN HIDDEN TESTS\ncheck("x.secret", f)\n'
                 "### END HIDDEN TESTS", [nbformat.v4.new_output(
                     "error", ename="CheckFailed", evalue="Your f is off by one (case 7).",
                     traceback=["Traceback...", 'check("x.secret", f)', "CheckFailed"])])
    spy = nbformat.v4.new_code_cell("print(In)")
    spy.outputs = [nbformat.v4.new_output("stream", name="stdout",
                                          text='[\'check("x.secret", f)\']\n')]
    untrusted = _cell("assert f(1) == 2, 'f(1) should be 2'\n### BEGIN HIDDEN TESTS\n"
                      "assert f(7) == 8\n### END HIDDEN TESTS", [nbformat.v4.new_output(
                          "error", ename="AssertionError", evalue="f(1) should be 2",
                          traceback=["Traceback...", "assert f(7) == 8", "AssertionError"])])
    nb = nbformat.v4.new_notebook(cells=[test, spy, untrusted])
    nb, _ = HideHiddenTests().preprocess(nb, {})
    text = json.dumps(nb)
    assert "x.secret" not in text and "x.visible" in text and "f(7)" not in text
    verdict = nb.cells[0].outputs[0]  # a check's diagnosis: rendered text, no traceback box
    assert verdict.output_type == "display_data" and "traceback" not in verdict
    assert "Your f is off by one (case 7)." in verdict.data["text/html"]
    assert nb.cells[2].outputs[0].traceback == ["AssertionError: f(1) should be 2"]
    assert "[hidden test]" in nb.cells[1].outputs[0].text


def test_feedback_renders_a_diagnosis_and_hides_server_paths():
    """Is a check's message wrapped HTML with its emphasis rendered (not literal asterisks,
    not one sideways-scrolling line), and are the grader's paths cut from tracebacks?"""
    from nbconvert import HTMLExporter

    message = ("It matches the output *before* the softmax: apply `softmax` to the "
               "**scores**, not to x < y. " + "Then compare again. " * 20)
    test = _cell('check("x.visible", f)', [nbformat.v4.new_output(
        "error", ename="CheckFailed", evalue=message, traceback=["Not yet"])])
    demo = nbformat.v4.new_code_cell("CourseMHA(8, 2)")
    demo.outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue="bad", traceback=[
        "File /srv/course/.grading/images/03_x-f21cbfbb/autograder/reference/attention.py:64",
        "File /home/me/.venv/lib/python3.11/site-packages/torch/nn/modules/module.py:1"])]
    nb = nbformat.v4.new_notebook(cells=[test, demo])
    nb, _ = HideHiddenTests().preprocess(nb, {})
    assert nb.cells[1].outputs[0].traceback == [
        "File autograder/reference/attention.py:64",
        "File site-packages/torch/nn/modules/module.py:1"]
    html, _ = HTMLExporter(template_name="classic", sanitize_html=True).from_notebook_node(nb)
    body = html[html.index("Not yet"):]
    assert "<em>before</em>" in body and "<code>softmax</code>" in body
    assert "<strong>scores</strong>" in body and "x &lt; y" in body
    assert "*before*" not in html and "<pre>" not in body[:len(message) + 200]
    assert "/.grading/" not in html and "/home/me" not in html


def test_duplicate_ids_leave_no_empty_metadata():
    """Does our DeduplicateIds leave cells that OverwriteCells(add_missing_cells) can read?"""
    nb = notebook({})
    i = next(i for i, c in enumerate(nb.cells)
             if c.metadata.get("nbgrader", {}).get("grade_id") == "softmax_values")
    nb.cells.insert(i, nbformat.from_dict(json.loads(json.dumps(nb.cells[i]))))
    nb.cells[i]["id"] = "dup"
    nb, _ = DropDuplicateIds().preprocess(nb, {})
    assert "nbgrader" not in nb.cells[i].metadata
    assert nb.cells[i + 1].metadata["nbgrader"]["grade_id"] == "softmax_values"


# ----------------------------------------------------------------------------- collection


@pytest.fixture
def learner_folder(tmp_path):
    course = tmp_path / "course"
    folder = course / "submitted" / "ana" / LESSON
    folder.mkdir(parents=True)
    return course, folder, collect.Learner("ana")


def _repair(course, learner):
    lesson = find_lesson("01")
    collect.repair(learner, lesson, course, lesson.release, course / "originals")
    return nbformat.read(course / "submitted" / "ana" / LESSON / f"{LESSON}.ipynb", 4)


@pytest.mark.parametrize("name, content, note", [
    (f"{LESSON}.ipynb", "", "the file is empty"),
    (f"{LESSON}.ipynb", "{ nope", "invalid JSON at line 1"),
    (f"{LESSON}.ipynb", '{"cells": []}', "has no cells"),
    (f"{LESSON}.ipynb", '[1, 2]', "no list of cells"),
    (f"{LESSON}.ipynb", '{"cells": [{"cell_type": "weird", "source": ""}], "metadata": {}, '
                        '"nbformat": 4, "nbformat_minor": 5}', "not a valid notebook"),
    (None, None, "no notebook submitted"),
])
def test_unreadable_submissions_are_graded_blank(learner_folder, name, content, note):
    """Is a file that is not a usable notebook replaced by the blank lesson, with a reason?"""
    course, folder, learner = learner_folder
    if name:
        (folder / name).write_text(content)
    nb = _repair(course, learner)
    assert learner.blank and any(note in n for n in learner.notes), learner.notes
    assert nb.cells[0].source.startswith("**Grading note.**")
    assert sum(1 for c in nb.cells if c.get("metadata", {}).get("nbgrader", {})
               .get("grade")) == 6


def test_renamed_and_extra_notebooks_are_sorted_out(learner_folder):
    """Is a renamed notebook renamed back, and the right one of two graded?"""
    course, folder, learner = learner_folder
    nbformat.write(notebook({}), folder / "lesson 1 (2).ipynb")
    (folder / "old.ipynb").write_text("{")
    nb = _repair(course, learner)
    assert not learner.blank
    assert "2 notebooks submitted; graded lesson 1 (2).ipynb" in learner.notes
    assert f"renamed lesson 1 (2).ipynb to {LESSON}.ipynb" in learner.notes
    assert sorted(p.name for p in folder.iterdir()) == [f"{LESSON}.ipynb"]
    assert sorted(p.name for p in (course / "originals" / "ana").iterdir()) == [
        "lesson 1 (2).ipynb", "old.ipynb"]
    assert any(c.source == CORRECT["softmax"] for c in nb.cells)


def test_tampered_cell_metadata_is_restored(learner_folder):
    """Can a learner turn a test cell into an answer cell, or change its points? (No.)"""
    course, folder, learner = learner_folder
    nb = notebook({})
    for cell in nb.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "softmax_values":
            cell.metadata["nbgrader"].update(grade=False, solution=True, points=99)
    nbformat.write(nb, folder / f"{LESSON}.ipynb")
    nb = _repair(course, learner)
    meta = next(c.metadata["nbgrader"] for c in nb.cells if c.get("metadata", {})
                .get("nbgrader", {}).get("grade_id") == "softmax_values")
    assert meta["grade"] and not meta["solution"] and meta["points"] == 2.0
    assert "cell metadata restored from the lesson: softmax_values" in learner.notes


@pytest.mark.parametrize("path, student, name, lms_name", [
    ("/x/doejohn_12345_678901_01_attention_as_retrieval.ipynb", "12345", ("", ""), "doejohn"),
    ("/x/smithjane_LATE_23456_678902_lesson-1.ipynb", "23456", ("", ""), "smithjane"),
    ("/x/Jane Doe_111111_assignsubmission_file_/lesson.ipynb", "111111", ("Jane", "Doe"),
     "Jane Doe"),
    ("/x/Ann Lee_222_assignsubmission_file_lesson.ipynb", "222", ("Ann", "Lee"), "Ann Lee"),
])
def test_lms_file_names(path, student, name, lms_name):
    """Are Canvas and Moodle download names read as (learner id, name), a Canvas login-like
    name run together ("doejohn") never landing in first or last name?"""
    names: dict = {}
    plugin = collect._collector_class([collect.CANVAS, collect.MOODLE_FOLDER,
                                       collect.MOODLE_FLAT], names,
                                      {"x/other.ipynb": "2026-01-02 03:04:05"})()
    info = plugin.collect(path)
    assert info["student_id"] == student and "timestamp" not in info
    assert names[student][:2] == name and names[student][3] == lms_name
    assert names[student][2] == ("LATE" in path)


# ----------------------------------------------------------------------------- journal


def test_journal_ignores_a_line_cut_by_a_kill(tmp_path):
    """Does a half-written last line (the run was killed mid-write) count for nothing?"""
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    journal.record("ana", "abc", "graded")
    journal.close()
    with open(path, "a") as fh:
        fh.write('{"student": "bo", "sha": "d", "stage": "gra')
    again = Journal(path)
    assert again.has("ana", "abc", "graded")
    assert not again.has("bo", "d", "graded") and not again.has("ana", "other", "graded")
    again.close()


def test_an_interrupted_regrade_is_finished_by_the_next_run(tmp_path):
    """After `--regrade` was killed, does a plain re-run regrade the learners it had not
    reached (their earlier results are forgotten) and know that it is finishing one?"""
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    for student in ("ana", "bo"):
        journal.record(student, "s", "graded")
        journal.record(student, "s", "feedback")
    journal.start_regrade(settings={"cell_timeout": 5.0})
    journal.record("ana", "s", "graded")  # killed before bo
    journal.close()
    again = Journal(path)
    assert again.regrade["settings"] == {"cell_timeout": 5.0}
    assert again.has("ana", "s", "graded") and not again.has("ana", "s", "feedback")
    assert not again.has("bo", "s", "graded")
    again.finish_regrade()
    again.close()
    assert Journal(path).regrade is None


def test_grade_refuses_the_wrong_lesson_before_writing(tmp_path):
    """Does --lesson 04 on a lesson 03 class stop, saying which lesson it is, with nothing
    written (no course folder, no gradebook, no graded/)?"""
    lesson = find_lesson("03")
    (tmp_path / "class" / "ana").mkdir(parents=True)
    shutil.copy(lesson.release, tmp_path / "class" / "ana")
    run = subprocess.run([sys.executable, "-m", "autograder", "grade", str(tmp_path / "class"),
                          "--lesson", "04", "--course", str(tmp_path / "c")],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2
    assert f"these notebooks are lesson 03 ({lesson.name})" in run.stderr
    assert not (tmp_path / "c").exists()


def test_grade_refuses_missing_input_in_one_line(tmp_path):
    """Does `grade` on a path that does not exist exit non-zero with one line?"""
    run = subprocess.run([sys.executable, "-m", "autograder", "grade",
                          str(tmp_path / "nope"), "--lesson", "01", "--course",
                          str(tmp_path / "c")], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [f"error: {tmp_path / 'nope'}: no such file or "
                                               "folder"]


@pytest.mark.parametrize("graded_lesson", lessons(), ids=lambda lesson: lesson.name)
def test_every_test_cell_is_judged_outside_the_kernel(graded_lesson):
    """Is every test cell of the lesson check-only, so `grade` decides it in the grader?"""
    nb = nbformat.read(graded_lesson.source, as_version=4)
    kernel_judged = [cell.metadata["nbgrader"]["grade_id"] for cell in nb.cells
                     if verdict.is_test_cell(cell) and verdict.check_calls(cell.source) is None]
    assert not kernel_judged, "test cells may only call check(...): " + ", ".join(kernel_judged)


def test_shared_highlighting_renders_the_same_html():
    """The feedback exporter highlights a cell every learner has once per worker: is every
    page what nbconvert's own exporter renders, cell for cell, byte for byte?"""
    from nbconvert import HTMLExporter
    from nbconvert.filters.highlight import Highlight2HTML

    lesson = find_lesson("06")
    source, release = (nbformat.read(p, as_version=4) for p in (lesson.source, lesson.release))
    magics = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("echo $HOME | wc -c")])
    magics.cells[0].metadata["magics_language"] = "bash"  # same source: other highlighting
    plain_cell = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("echo $HOME | wc -c")])
    other_lexer = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = [1, 2]")])
    other_lexer.metadata["language_info"] = {"name": "text", "pygments_lexer": "text"}
    python = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = [1, 2]")])
    pages = [source, release, source, magics, plain_cell, other_lexer, python, release]
    shared = HTMLExporter()
    share_highlighting(shared)
    calls = []
    original = Highlight2HTML.__call__

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    Highlight2HTML.__call__ = counting
    try:
        for nb in pages:
            assert shared.from_notebook_node(nb)[0] == HTMLExporter().from_notebook_node(nb)[0]
    finally:
        Highlight2HTML.__call__ = original
    highlighted = sum(c.cell_type == "code" for nb in pages for c in nb.cells)
    assert highlighted < len(calls) < 2 * highlighted  # the shared exporter reused some


# ----------------------------------------------------------------------------- the soup pass

PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5E"
       "rkJggg==")
HOSTILE = [  # HTML outputs a learner's cells can produce: each a different parsing hazard
    "<b>fine</b>", "<div>left open", "</div>closes the page's", "</main></body>",
    "<script>unclosed", "<br></br>", "x</br>y", "<img src='a.png'>", "<pre>  \n  </pre>",
    '<div class="jp-Notebook"><div class="jp-Cell-inputWrapper">in</div></div>',
    "<!--attnlab-soup-cells-->", "<!-- unclosed", "<div", "&amp &lt; &#60 x < y",
    '<div class="cell border-box-sizing code_cell rendered">a fake cell</div>', "  \n ",
    "<style>p {}</style>", "<textarea>\n\n</textarea>", "<p>one<p>two",
]


def _page(exporter, nb) -> str:
    """The page an HTML exporter renders before its BeautifulSoup pass."""
    from unittest import mock

    from nbconvert.exporters.templateexporter import TemplateExporter

    pages, real = [], TemplateExporter.from_notebook_node

    def grab(self, nb, resources=None, **kw):
        out = real(self, nb, resources, **kw)
        pages.append(out[0])
        return out

    with mock.patch.object(TemplateExporter, "from_notebook_node", grab):
        exporter.from_notebook_node(nb)
    return pages[-1]


def _nbconvert_pass(page: str) -> str:
    """nbconvert's own HTMLExporter.from_notebook_node with this page as its template's."""
    from unittest import mock

    from nbconvert import HTMLExporter
    from nbconvert.exporters.templateexporter import TemplateExporter

    with mock.patch.object(TemplateExporter, "from_notebook_node",
                           lambda self, nb, resources=None, **kw: (page, resources)):
        return HTMLExporter().from_notebook_node(nbformat.v4.new_notebook())[0]


def _with_outputs(nb, extra: list[str]):
    """The notebook with outputs in its code cells: images without alt text, text, errors,
    and the given HTML outputs (one per cell, in order)."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    code = [c for c in nb.cells if c.cell_type == "code"]
    for i, cell in enumerate(code):
        cell.outputs = [nbformat.v4.new_output("stream", text=f"cell {i} <ok> & done\n")]
        if i % 3 == 0:
            cell.outputs.append(nbformat.v4.new_output("display_data", data={"image/png": PNG}))
        if i % 5 == 1:
            cell.outputs.append(nbformat.v4.new_output("error", ename="ValueError",
                                                       evalue="bad <input>", traceback=[]))
        if i < len(extra):
            cell.outputs.append(nbformat.v4.new_output("display_data",
                                                       data={"text/html": extra[i]}))
    return nb


def test_soup_pass_gives_nbconvert_s_page():
    """The feedback exporter does nbconvert's closing BeautifulSoup pass a cell at a time,
    remembering cells: is every page the string nbconvert's own pass makes of it, with the
    lesson's pages, images, and HTML outputs that leave elements open, close the page's,
    open a script, repeat the marker? Are cells every learner has parsed once, and does
    only a page with such a hazard take nbconvert's whole-page way?"""
    from nbconvert import HTMLExporter

    classic = HTMLExporter(template_name="classic")
    clean, hazards = [], []
    for number in ("01", "06"):
        release = nbformat.read(find_lesson(number).release, as_version=4)
        clean += [_page(classic, release), _page(classic, _with_outputs(release, []))]
        places = [f"<i>output {k}</i>" for k in range(len(HOSTILE))]
        page = _page(classic, _with_outputs(release, places))
        clean.append(page)
        # the template inserts an HTML output as it is: each hazard in its own page
        hazards += [page.replace(places[k], hazard) for k, hazard in enumerate(HOSTILE)]
        hazards.append(functools.reduce(lambda p, k: p.replace(places[k], HOSTILE[k]),
                                        range(len(HOSTILE)), page))
        # BeautifulSoup remembers a void element's start across the page: a later end tag
        # of it is dropped, not parsed (here the spaces around it then make one string)
        hazards.append(page.replace(places[0], "<img src='a.png'>").replace(
            places[1], " </img> "))
    soup_pass, parsed, whole = SoupPass(), [], []
    original, real_whole = SoupPass._cell, SoupPass.whole
    SoupPass._cell = lambda self, *a: parsed.append(1) or original(self, *a)
    SoupPass.whole = lambda self, page: whole.append(page) or real_whole(self, page)
    try:
        for page in clean + hazards:
            assert soup_pass(page)[0] == _nbconvert_pass(page)
    finally:
        SoupPass._cell, SoupPass.whole = original, real_whole
    cells = sum(len(re.findall(SoupPass.CELLS, page)) for page in clean + hazards)
    assert len(parsed) < cells / 4  # the lesson's cells were parsed once, not per page
    assert not any(page in whole for page in clean)
    assert 0 < len(whole) < len(hazards)  # those that need it, not every one


def test_the_feedback_exporter_uses_the_soup_pass():
    """share_soup: the exporter's page is nbconvert's, and its cells are remembered."""
    from nbconvert import HTMLExporter

    release = nbformat.read(find_lesson("01").release, as_version=4)
    shared = HTMLExporter(template_name="classic")
    share_soup(shared)
    nb = _with_outputs(release, HOSTILE[:1])
    ours = shared.from_notebook_node(nb)[0]
    assert ours == _nbconvert_pass(_page(HTMLExporter(template_name="classic"), nb))
    assert 'alt="No description has been provided for this image"' in ours


FRAGMENTS = st.lists(st.sampled_from(
    HOSTILE + ["<div>", "</div>", "<span class='s'>", "</span>", "<p>", "</p>", "text",
               "<pre>", "</pre>", " ", "\n", "<img src=x>", "<img alt=y>", "</img>",
               "<script>", "</script>", "<body>", "</p >"]), max_size=10).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(FRAGMENTS, min_size=1, max_size=4))
def test_soup_pass_on_any_cells(contents):
    """Any HTML in any cell: the pass (one remembering instance for all examples, so cells
    recur in other pages) gives nbconvert's page."""
    head = '<html><body><div class="jp-Notebook"><main id="notebook-container">\n'
    cells = "".join(f'<div class="cell border-box-sizing code_cell">\n{c}\n</div>\n'
                    for c in contents)
    page = head + cells + "</main></div>\n</body>\n</html>"
    assert _SHARED_PASS(page)[0] == _nbconvert_pass(page)


_SHARED_PASS = SoupPass()


@pytest.mark.parametrize("number", ["01", "06", "10"])
def test_the_first_worker_renders_a_lesson_page_before_forking(number):
    """grade's first worker renders the lesson once with its feedback exporter before it
    forks the others (warm_exporter): it renders without the gradebook, and fills the
    shared caches with the lesson's cells."""
    from autograder.course import nbgrader_config
    from autograder.grading.nbgrader_hooks import warm_exporter
    from autograder.grading.worker import feedback_converter

    lesson = find_lesson(number)
    converter = feedback_converter(nbgrader_config(ROOT), lesson.name)
    warm_exporter(converter, nbformat.read(lesson.source, as_version=4))
    assert len(converter.exporter.soup_pass.cache) > 5

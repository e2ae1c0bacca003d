"""Does the course work in JupyterLab, in a real browser, as a learner and an instructor meet it?

Debian's Chromium driven by Playwright against a JupyterLab started from the project's
environment. Installs Chromium when run as root (as CI is); otherwise skips with a reason.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from autograder.course import ROOT
from tests.browser.lab import (
    CHROMIUM_FLAGS,
    JS_OUTPUTS,
    JS_RUN_CELL,
    JS_SAVE,
    JS_WAIT_READY,
    LabServer,
    ensure_chromium,
    learner_tree,
)

pytestmark = pytest.mark.browser
# Screenshots of each explorer: build/screenshots on every run (git-ignored artefacts);
# `make screenshots` points ATTNLAB_SCREENSHOTS at assets/ to refresh the README's pictures.
SHOTS = Path(os.environ.get("ATTNLAB_SCREENSHOTS", ROOT / "build" / "screenshots"))
UNANSWERED = ("not written yet", "not defined yet", "NotImplementedError")


@pytest.fixture(scope="module")
def chromium():
    path = ensure_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=CHROMIUM_FLAGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def learner_lab(tmp_path_factory, chromium):
    tree = learner_tree(tmp_path_factory.mktemp("learner"))
    server = LabServer(tree, ROOT / "etc" / "jupyter" / "learner", tree / "lab.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    yield page
    context.close()


def open_notebook(page, lab: LabServer, path: str) -> int:
    """Open one notebook in a fresh JupyterLab workspace (?reset: no tabs restored)."""
    page.goto(lab.url(f"lab/tree/{path}?reset"))
    page.wait_for_function("(path) => { const w = window.jupyterapp && "
                           "window.jupyterapp.shell.currentWidget; "
                           "return w && w.context && w.context.path === path && w.content; }",
                           arg=path, timeout=60_000)
    return page.evaluate(JS_WAIT_READY, path)


def run_every_cell(page, n_cells: int) -> list[list[dict]]:
    """Run the cells one at a time (as Shift+Enter would), so an error does not stop the rest."""
    page.set_default_timeout(180_000)
    for i in range(n_cells):
        assert page.evaluate(JS_RUN_CELL, i), f"cell {i} did not run"
    return page.evaluate(JS_OUTPUTS)


def errors_of(outputs: list[list[dict]]) -> list[tuple[int, str, str]]:
    return [(i, out.get("ename", "stderr"), out.get("evalue", out.get("text", "")))
            for i, cell in enumerate(outputs) for out in cell
            if out.get("output_type") == "error"
            or (out.get("output_type") == "stream" and out.get("name") == "stderr")]


def text_of(outputs: list[list[dict]], i: int) -> str:
    return "".join("".join(out.get("text", "")) for out in outputs[i]
                   if out.get("output_type") == "stream")


def test_learner_copy_runs_with_only_unanswered_exercises_failing(learner_lab, page, lesson):
    """Run cell by cell untouched: only NotImplementedError, and the self-check scores zero?"""
    name = lesson.name
    n = open_notebook(page, learner_lab, f"workspace/{name}/{name}.ipynb")
    outputs = run_every_cell(page, n)
    unexpected = [e for e in errors_of(outputs)
                  if not (e[1] == "NotImplementedError" or any(s in e[2] for s in UNANSWERED))]
    assert not unexpected, unexpected
    report = text_of(outputs, n - 1)  # the last cell grades the saved notebook
    assert re.search(r"Score: 0 / \d+", report), report


def test_solution_runs_clean_and_its_explorer_responds(learner_lab, page, lesson):
    """Does the solution run without error, its explorer render and redraw when a control moves?"""
    name = lesson.name
    n = open_notebook(page, learner_lab, f"solved/{name}/{name}.ipynb")
    outputs = run_every_cell(page, n)
    assert not errors_of(outputs), errors_of(outputs)
    page.evaluate(JS_SAVE)
    report = text_of(outputs, n - 1)
    score = re.search(r"Score: ([\d.]+) / ([\d.]+)", report)
    assert score and score.group(1) == score.group(2), report

    widget = page.locator(".jp-OutputArea-output .widget-vbox, .jp-OutputArea-output .widget-hbox"
                          ).first
    widget.scroll_into_view_if_needed()
    image = widget.locator("img").first
    image.wait_for(state="visible")
    (SHOTS / name).mkdir(parents=True, exist_ok=True)
    widget.screenshot(path=str(SHOTS / name / "explorer.png"))
    before = image.get_attribute("src")
    move_first_control(page, widget)
    page.wait_for_function("([el, before]) => { const img = el.querySelector('img'); "
                           "return img && img.getAttribute('src') !== before; }",
                           arg=[widget.element_handle(), before], timeout=30_000)


def move_first_control(page, widget) -> None:
    """Nudge the explorer's first control: a slider, a dropdown, a toggle or a checkbox."""
    slider = widget.locator(".noUi-handle")
    if slider.count():
        handle = slider.first
        handle.focus()
        before = handle.get_attribute("aria-valuenow")
        for key in ("ArrowRight", "ArrowLeft"):  # a slider may start at its maximum
            for _ in range(3):
                page.keyboard.press(key)
            if handle.get_attribute("aria-valuenow") != before:
                return
        raise AssertionError("the explorer's slider did not move")
    select = widget.locator("select")
    if select.count():
        options = select.first.locator("option").all_inner_texts()
        select.first.select_option(label=options[1 if len(options) > 1 else 0])
        return
    toggle = widget.locator("button, input[type=checkbox]")
    if toggle.count():
        toggle.first.click()
        return
    raise AssertionError("the explorer has no slider, dropdown, button or checkbox")


@pytest.mark.parametrize("copy, expected", [("workspace", r"failed|fail|error"),
                                            ("solved", r"[Ss]uccess")])
def test_validate_button_answers(learner_lab, page, lesson, copy, expected):
    """Does nbgrader's Validate button report a verdict on the untouched lesson and the solution?"""
    name = lesson.name
    open_notebook(page, learner_lab, f"{copy}/{name}/{name}.ipynb")
    page.get_by_role("button", name="Validate").first.click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(state="visible", timeout=240_000)
    page.wait_for_function("() => { const d = document.querySelector('.jp-Dialog'); "
                           "return d && !/Validating/.test(d.innerText); }", timeout=240_000)
    assert re.search(expected, dialog.inner_text()), dialog.inner_text()


def test_learner_lab_hides_instructor_tools(learner_lab, page):
    """Does `make lab` show learners no formgrader and no create-assignment tools?"""
    page.goto(learner_lab.url("lab"))
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.started", timeout=60_000)
    ids = page.evaluate("() => window.jupyterapp.commands.listCommands()")
    assert not [c for c in ids if "formgrader" in c or "create-assignment" in c]
    assert page.request.get(learner_lab.url("formgrader")).status == 404


def test_formgrader_lists_the_course(tmp_path, chromium):
    """Does `make instructor`'s JupyterLab open formgrader with every lesson listed?"""
    for name in ("solutions", "lessons", "nbgrader_config.py"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    server = LabServer(tmp_path, ROOT / "etc" / "jupyter" / "instructor", tmp_path / "lab.log")
    server.start()
    try:
        context = chromium.new_context()
        page = context.new_page()
        page.goto(server.url("formgrader"))
        text = page.locator("body").inner_text(timeout=60_000)
        from autograder.course import lessons

        for lesson in lessons():
            page.get_by_text(lesson.name).first.wait_for(timeout=60_000)
        assert "Manage Assignments" in text or lessons()[0].name in page.content()
        context.close()
    finally:
        server.stop()


def test_formgrader_opens_a_graded_class(tmp_path, chromium):
    """After `grade`, does formgrader show the class with its scores and open a learner's
    notebook for the short answer's manual grade?"""
    import subprocess
    import sys

    from autograder.course import find_lesson
    from tests.grading_fixtures import isolation_flags

    lesson = find_lesson("02")
    shutil.copy(ROOT / "nbgrader_config.py", tmp_path)
    for name in ("solutions", "lessons"):
        shutil.copytree(ROOT / name / lesson.name, tmp_path / name / lesson.name)
    (tmp_path / "class" / "ada").mkdir(parents=True)
    (tmp_path / "class" / "blaise").mkdir()
    shutil.copy(lesson.source, tmp_path / "class" / "ada" / lesson.source.name)
    shutil.copy(lesson.release, tmp_path / "class" / "blaise" / lesson.release.name)
    done = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", str(tmp_path / "class"), "--lesson", "02",
         "--course", str(tmp_path), "--out", str(tmp_path / "graded"), "--no-progress",
         *isolation_flags()], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    server = LabServer(tmp_path, ROOT / "etc" / "jupyter" / "instructor", tmp_path / "lab.log")
    server.start()
    try:
        context = chromium.new_context()
        page = context.new_page()
        page.goto(server.url("tree"))  # the token in the URL logs the browser in (a cookie)
        page.wait_for_load_state()
        page.goto(server.url(f"formgrader/manage_submissions/{lesson.name}"))
        page.get_by_text("blaise", exact=True).first.wait_for(timeout=60_000)
        rows = {r.split("\t")[1]: r for r in page.locator("tbody tr").all_inner_texts()
                if r.count("\t") > 2}
        auto = sum(c["points"] for c in _graded_cells(lesson.source) if c["auto"])
        total = sum(c["points"] for c in _graded_cells(lesson.source))
        assert "needs manual grading" in rows["ada"] and f"{auto:g} / {total:g}" in rows["ada"]
        assert f"0 / {total:g}" in rows["blaise"]
        page.goto(server.url(f"formgrader/gradebook/{lesson.name}/{lesson.name}"))
        page.get_by_text("Submission #1").first.click()  # formgrader hides names by default
        page.locator("input.score").first.wait_for(timeout=60_000)
        assert "Submission 1 / 2" in page.locator("body").inner_text()
        manual = [c for c in _graded_cells(lesson.source) if not c["auto"]]
        assert page.locator("input.score").count() >= len(manual) > 0
        # the model answer and rubric stand under the learner's answer, for the instructor
        from autograder.grading.model_answers import model_answers

        answers = model_answers(lesson.source)
        assert len(answers) == len(manual)
        body = page.locator("body").inner_text()
        assert body.count("Model answer and rubric") == len(manual)
        for answer in answers.values():
            assert answer.splitlines()[0].replace("*", "").strip()[:60] in body
        # ... and never in a learner's feedback (blaise handed in the release untouched)
        feedback = (tmp_path / "graded" / "feedback" / "blaise" / lesson.name /
                    f"{lesson.name}.html").read_text()
        assert "Model answer and rubric" not in feedback
        assert not any(a.splitlines()[0].replace("*", "").strip()[:60] in feedback
                       for a in answers.values())
        context.close()
    finally:
        server.stop()


def _graded_cells(path: Path) -> list[dict]:
    """Each graded cell of a source notebook: its points, and whether a test cell scores it."""
    import nbformat

    cells = []
    for cell in nbformat.read(path, as_version=4).cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("points"):
            cells.append({"points": float(meta["points"]), "auto": bool(meta.get("grade"))
                          and not meta.get("solution")})
    return cells


def test_taken_port_makes_lab_pick_another(tmp_path):
    """With `make lab`'s own flags, does JupyterLab move to a free port when its port is taken?"""
    import socket
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        flags = subprocess.run(["make", "-s", "print-LAB_FLAGS", f"PORT={port}"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.split()
        assert f"--ServerApp.port={port}" in flags
        server = LabServer(tmp_path, ROOT / "etc" / "jupyter" / "learner", tmp_path / "lab.log")
        proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser",
                                 "--ServerApp.ip=127.0.0.1", *flags,
                                 f"--IdentityProvider.token={server.token}"],
                                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        try:
            for line in proc.stdout:
                found = re.search(r"http://127\.0\.0\.1:(\d+)/lab", line)
                if found:
                    assert int(found.group(1)) != port
                    break
            else:
                raise AssertionError("JupyterLab exited without serving")
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=30)

"""A whole class on the hub (`make hub`): release, fetch, submit, grade, feedback, in order.

One hub for the module (hub/jupyterhub_config.py with real system users, PAM, the proxy,
the spawner and the idle culler), one instructor and three learners: ada hands in the
solution, bo a typical mistake (after a first, worse attempt), cy the untouched lesson,
late. Learners act through their server (the browser, for the Assignments tab and a
password login) or through nbgrader as themselves (`runuser`), as their terminal would.
The tests run in file order: each step builds on the one before.
"""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import requests

from autograder.course import ROOT
from tests.browser.lab import CHROMIUM_FLAGS, ensure_chromium
from tests.grading_fixtures import isolation_flags
from tests.grading_fixtures.submissions import HONEST, LESSON, notebook
from tests.hubclass.class_hub import ClassHub, require_hub

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("hub")]

TEACH, ADA, BO, CY = "athub-teach", "athub-ada", "athub-bo", "athub-cy"
ROSTER = {TEACH: "instructor", ADA: "learner", BO: "learner", CY: "learner"}
# what each hands in last, and its score as the grading suite established it
FINAL = {ADA: "correct", BO: "softmax_overflows", CY: "untouched"}


@pytest.fixture(scope="module")
def hub():
    require_hub()
    ensure_chromium()
    hub = ClassHub(ROSTER)
    try:
        hub.make_accounts()
        hub.start()
        yield hub
    finally:
        hub.cleanup()


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=ensure_chromium(), args=CHROMIUM_FLAGS,
                                    headless=True)
        yield browser
        browser.close()


def login(chromium, hub: ClassHub, name: str):
    """A browser page logged in as ``name`` through the hub's login form (PAM)."""
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(f"{hub.url}/hub/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", hub.password(name))
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url(re.compile(rf".*/user/{name}/lab.*"), timeout=180_000)
    page.wait_for_function("() => document.querySelector('.jp-LabShell')", timeout=120_000)
    return context, page


def lesson_path(name: str) -> Path:
    return Path(f"/home/{name}/attention-lab/{LESSON}/{LESSON}.ipynb")


def hand_in(hub: ClassHub, name: str, variant: str) -> None:
    answers = HONEST[variant][0]
    hub.put_file(name, lesson_path(name), nbformat.writes(notebook(answers)))
    hub.as_user(name, "nbgrader", "submit", LESSON)


def inbound(hub: ClassHub, name: str) -> list[Path]:
    return sorted(p for p in (hub.exchange / "inbound").iterdir()
                  if p.name.startswith(f"{name}+"))


# ----------------------------------------------------------------------------- the loop


def test_release_and_fetch_in_the_assignments_tab(hub, chromium):
    """The instructor releases the lesson; a learner logs in with the password `make hub`
    gave them, sees it in the Assignments tab and fetches it there."""
    hub.as_user(TEACH, "nbgrader", "release_assignment", LESSON)
    context, page = login(chromium, hub, ADA)
    try:
        page.get_by_text("Nbgrader", exact=True).click()
        menu = page.locator(".lm-Menu").last
        menu.get_by_text("Assignment List", exact=True).wait_for()
        assert "Formgrader" not in menu.inner_text()
        menu.get_by_text("Assignment List", exact=True).click()
        row = page.locator("#released_assignments_list .list_item", has_text=LESSON)
        row.wait_for(timeout=60_000)
        row.get_by_role("button", name="Fetch").click()
        page.locator("#fetched_assignments_list .list_item", has_text=LESSON).first.wait_for(
            timeout=60_000)
    finally:
        context.close()
    assert lesson_path(ADA).exists()
    assert hub.as_user(ADA, "test", "-r", str(lesson_path(ADA)), check=False).returncode == 0


def test_fetch_again_after_deleting_the_copy(hub):
    """A learner who deletes their fetched copy fetches it again, unchanged."""
    hub.as_user(CY, "nbgrader", "fetch_assignment", LESSON)
    first = lesson_path(CY).read_bytes()
    hub.as_user(CY, "rm", "-r", str(lesson_path(CY).parent))
    again = hub.as_user(CY, "nbgrader", "fetch_assignment", LESSON)
    assert "Fetched as" in again.stdout + again.stderr
    assert lesson_path(CY).read_bytes() == first


def test_submit_twice_keeps_both(hub):
    """Ada validates and hands in the solution; Bo hands in twice: both of his submissions
    stay in the exchange (the collected one is the latest, checked at grading)."""
    hub.as_user(BO, "nbgrader", "fetch_assignment", LESSON)
    hub.put_file(ADA, lesson_path(ADA), nbformat.writes(notebook(HONEST[FINAL[ADA]][0])))
    validated = hub.as_user(ADA, "nbgrader", "validate", str(lesson_path(ADA)))
    assert "Success! Your notebook passes all the tests." in validated.stdout, validated.stdout
    hand_in(hub, ADA, FINAL[ADA])
    hand_in(hub, BO, "softmax_last_axis")
    hand_in(hub, BO, FINAL[BO])
    assert len(inbound(hub, ADA)) == 1 and len(inbound(hub, BO)) == 2


def test_late_submission_is_flagged(hub):
    """The due date passes; Cy hands in afterwards: nbgrader records it as late."""
    # nbgrader takes whole seconds: the due date is the next whole second, so everything
    # handed in before this line is on time, and Cy hands in once it has passed
    now = datetime.datetime.now(datetime.timezone.utc)
    due = now.replace(microsecond=0) + datetime.timedelta(seconds=1)
    hub.as_user(TEACH, "nbgrader", "db", "assignment", "add", LESSON,
                f"--duedate={due:%Y-%m-%d %H:%M:%S} UTC")
    time.sleep(max(0.0, (due - datetime.datetime.now(datetime.timezone.utc)).total_seconds())
               + 0.2)
    hand_in(hub, CY, FINAL[CY])
    assert len(inbound(hub, CY)) == 1


def test_hub_killed_mid_class_loses_nothing(hub):
    """SIGKILL the hub with servers running, start it again: accounts, tokens, servers and
    every submission are still there."""
    hub.spawn(BO)
    token = hub.user_token(BO)
    before = sorted(p.name for p in (hub.exchange / "inbound").iterdir())
    hub.kill()
    hub.start()
    assert hub.api("GET", "/user", token=token).json()["name"] == BO
    assert sorted(p.name for p in (hub.exchange / "inbound").iterdir()) == before
    hub.spawn(BO)
    r = requests.get(f"{hub.url}/user/{BO}/api/contents/attention-lab", timeout=60,
                     headers={"Authorization": f"token {token}"})
    assert r.status_code == 200, r.text[:300]


def test_collect_grade_and_return_feedback(hub):
    """Collect, grade with `python -m autograder grade` on nbgrader's submitted/ folder,
    generate and release feedback, fetch it: each learner's score, late flag, no hidden
    test in what they get back."""
    hub.as_user(TEACH, "nbgrader", "collect", LESSON)
    stamps = {n: (hub.course / "submitted" / n / LESSON / "timestamp.txt").read_text()
              for n in FINAL}
    assert stamps[BO] in inbound(hub, BO)[-1].name  # the latest of his two
    grade = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", str(hub.course / "submitted"),
         "--course", str(hub.course), "--lesson", LESSON, "--out",
         str(hub.course / "graded"), "--no-progress", *isolation_flags()],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert grade.returncode == 0, grade.stdout[-3000:] + grade.stderr[-2000:]
    # grade ran as root here (the strongest sandbox): its files go back to the instructors
    subprocess.run(["chown", "-R", "--reference", str(hub.course), str(hub.course)],
                   check=True)
    hub.as_user(TEACH, "nbgrader", "generate_feedback", LESSON)
    hub.as_user(TEACH, "nbgrader", "release_feedback", LESSON)
    hidden = _hidden_lines()
    for name, variant in FINAL.items():
        hub.as_user(name, "nbgrader", "fetch_feedback", LESSON)
        pages = list(lesson_path(name).parent.glob(f"feedback/*/{LESSON}.html"))
        assert len(pages) == 1, pages
        html = pages[0].read_text(encoding="utf-8")
        expected = HONEST[variant][1]
        assert re.search(rf"Score: {expected:g}(\.0)? / 8(\.0)?", html), \
            (name, re.findall(r"Score: [^<]*", html))
        assert "HIDDEN TESTS" not in html and hidden and not [h for h in hidden if h in html]
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{hub.course / 'gradebook.db'}", "attention-lab") as gb:
        late = {n: gb.find_submission(LESSON, n).total_seconds_late for n in FINAL}
        scores = {n: gb.find_submission(LESSON, n).score for n in FINAL}
    assert late[CY] > 0 and late[ADA] == 0 and late[BO] == 0
    assert scores == {n: HONEST[v][1] for n, v in FINAL.items()}


def test_formgrader_inside_jupyterlab_shows_the_scores(hub, chromium):
    """Under the installed JupyterHub, formgrader renders inside the instructor's JupyterLab
    (its frame is allowed: frame-ancestors 'self') and lists each learner's score."""
    context, page = login(chromium, hub, TEACH)
    try:
        # control: with JupyterHub's default header, Chromium refuses formgrader's frame
        context.route(re.compile(r".*/formgrader.*"), _hub_default_csp)
        page.get_by_text("Nbgrader", exact=True).click()
        page.get_by_text("Formgrader", exact=True).click()
        page.wait_for_function("() => [...document.querySelectorAll('iframe')].some("
                               "(f) => /formgrader/.test(f.src))", timeout=60_000)
        _wait_for_blocked_frame(page)
        context.unroute(re.compile(r".*/formgrader.*"))
        page.reload()
        page.wait_for_function("() => document.querySelector('.jp-LabShell')",
                               timeout=120_000)
        page.get_by_text("Nbgrader", exact=True).click()
        page.get_by_text("Formgrader", exact=True).click()
        frame = page.frame_locator("iframe").first
        frame.get_by_text("Manage Assignments").first.wait_for(timeout=60_000)
        frame.get_by_text(LESSON).first.wait_for(timeout=60_000)
        page.goto(f"{hub.url}/user/{TEACH}/formgrader/manage_submissions/{LESSON}")
        page.get_by_text(ADA, exact=True).first.wait_for(timeout=60_000)
        rows = {r.split("\t")[1]: r for r in page.locator("tbody tr").all_inner_texts()
                if r.count("\t") > 2}
    finally:
        context.close()
    for name, variant in FINAL.items():
        assert f"{HONEST[variant][1]:g} / 8" in rows[name], rows[name]
    # JupyterHub's own default stays on learners' servers; only formgrader's host relaxes it
    hub.spawn(ADA)
    csp = {name: requests.get(f"{hub.url}/user/{name}/api/status", timeout=60, headers={
        "Authorization": f"token {hub.user_token(name)}"}).headers["Content-Security-Policy"]
        for name in (TEACH, ADA)}
    assert "frame-ancestors 'self'" in csp[TEACH] and "frame-ancestors 'none'" in csp[ADA]


# ----------------------------------------------------------------------------- walls


def test_learners_cannot_reach_each_other_or_formgrader(hub):
    """A learner gets 403/404 for formgrader, another learner's server and files, and the
    file system refuses them other learners' submissions and homes."""
    hub.spawn(ADA)
    hub.spawn(BO)
    token = hub.user_token(BO)
    user = f"{hub.url}/user"
    def get(path):
        return requests.get(f"{user}/{path}", headers={"Authorization": f"token {token}"},
                            timeout=60, allow_redirects=False)

    assert get(f"{BO}/api/contents/attention-lab").status_code == 200
    assert get(f"{BO}/formgrader").status_code == 404
    assert get(f"{BO}/formgrader/api/assignments").status_code == 404
    assert get(f"{ADA}/api/contents/attention-lab").status_code in (403, 404)
    assert get(f"{ADA}/files/attention-lab/{LESSON}/{LESSON}.ipynb").status_code in (403, 404)
    assert get(f"{TEACH}/formgrader").status_code in (302, 403, 404)
    assert get(f"{BO}/api/contents/..%2F{ADA}").status_code in (400, 403, 404)
    # nbgrader's own model: inbound/ cannot be listed (0733), and a submission's folder name
    # ends in a random string, so another learner's submission cannot be found to be read
    secret = inbound(hub, ADA)[0].name.rsplit("+", 1)[1]
    assert len(secret) >= 12
    for cmd in (["ls", str(hub.exchange / "inbound")],
                ["ls", str(hub.exchange / "feedback")],
                ["ls", f"/home/{ADA}"],
                ["cat", str(lesson_path(ADA))],
                ["ls", str(hub.course)],
                ["cat", str(hub.course / "gradebook.db")],
                ["ls", str(hub.hub_dir / "state")]):
        done = hub.as_user(BO, *cmd, check=False)
        assert done.returncode != 0 and "Permission denied" in done.stderr, (cmd, done)


def _hub_default_csp(route) -> None:
    """Serve formgrader with the header JupyterHub >= 4.1 sends by default."""
    response = route.fetch()
    route.fulfill(response=response, headers={**response.headers,
                                              "content-security-policy": "frame-ancestors 'none'"})


def _wait_for_blocked_frame(page, timeout: float = 60) -> None:
    """Chromium replaces a refused frame with its own error page (chrome-error://)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(f.url.startswith("chrome-error://") for f in page.frames):
            return
        page.wait_for_timeout(250)
    raise AssertionError(f"formgrader's frame was not refused: {[f.url for f in page.frames]}")


def _hidden_lines() -> list[str]:
    """The names the hidden tests check by (``check("softmax.hidden", ...)``) in the
    lesson's source: never to reach a learner."""
    source = ROOT / "solutions" / LESSON / f"{LESSON}.ipynb"
    lines = []
    for cell in json.loads(source.read_text())["cells"]:
        text = "".join(cell["source"])
        for block in re.findall(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", text,
                                re.S):
            lines += re.findall(r'check\("([^"]+)"', block)
    return lines

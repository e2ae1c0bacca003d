"""Does `insight` say what a class got wrong? A class of 40 learners of lesson 01 with known
mistakes (wrong answers from the lesson's catalogue) is graded once with `grade`; the
report must count each mistake, untouched exercise and problem exactly."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder.course import ROOT
from autograder.insight import mistake_key
from tests import test_wrong_answers_lesson01 as wrong

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/grading_fixtures
from grading_fixtures import isolation_flags  # noqa: E402
from grading_fixtures.submissions import LESSON, notebook, release  # noqa: E402

pytestmark = [pytest.mark.notebook, pytest.mark.xdist_group("insight")]
SHOTS = Path(os.environ.get("ATTNLAB_SCREENSHOTS", ROOT / "build" / "screenshots"))


def _as(fn, name: str) -> str:
    """A catalogued wrong answer as the learner's cell: renamed, on the learner's softmax."""
    source = inspect.getsource(fn).replace(f"def {fn.__name__}(", f"def {name}(")
    return source.replace("good_softmax(", "softmax(")


NO_SHIFT = {"softmax": _as(wrong.softmax_no_shift, "softmax")}
LAST_AXIS = {"softmax": _as(wrong.softmax_ignores_axis, "softmax")}
AXIS0 = {"softmax": _as(wrong.softmax_axis0, "softmax")}
SCALED = {"attend": _as(wrong.attend_scaled, "attend")}
SWAPPED = {"attend": _as(wrong.attend_swapped, "attend")}
AVERAGE = {"attend": _as(wrong.attend_plain_average, "attend")}
KEY = {"blanks": 'blank_projection = "key"\nblank_normaliser = "softmax"\n'}
QUERY = {"blanks": 'blank_projection = "query"\nblank_normaliser = "softmax"\n'}
SIGMOID = {"blanks": 'blank_projection = "value"\nblank_normaliser = "sigmoid"\n'}
CRASH = {"attend": "import os\nos._exit(3)\n"}
STUB = next(c.source for c in release().cells  # the release's own attend cell
            if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "attend")

# variant -> (answers over the correct ones, None = the untouched release; learners)
CLASS = {
    "correct": ({}, 6), "noshift": (NO_SHIFT, 5), "lastaxis": (LAST_AXIS, 3),
    "axis0": (AXIS0, 2), "scaled": (SCALED, 4), "swapped": (SWAPPED, 3),
    "average": (AVERAGE, 2), "key": (KEY, 3), "query": (QUERY, 2), "sigmoid": (SIGMOID, 2),
    "noshift-scaled": ({**NO_SHIFT, **SCALED}, 3), "untouched": (None, 3),
    "attend-stub": ({"attend": STUB}, 1), "crash": (CRASH, 1),
}


def who(*variants: str) -> list[str]:
    return sorted(f"{v}-{i:02d}" for v in variants for i in range(CLASS[v][1]))


# (check, a phrase of the message, the learners who made that mistake)
MISTAKES = [
    ("softmax.stable", "contains NaN", who("noshift", "noshift-scaled")),
    ("attend.values", "divided by sqrt(d)", who("scaled", "noshift-scaled")),
    ("softmax.values", "It matches a softmax over axis", who("lastaxis", "axis0")),
    ("blanks.answers", "`blank_projection` =", who("key", "query")),
    ("attend.properties", "has shape (3,) but should have shape (6,)", who("swapped")),
    ("attend.values", "returned (weights, output)", who("swapped")),
    ("attend.values", "plain average of the values", who("average")),
    ("blanks.answers", "`blank_normaliser` =", who("sigmoid")),
    ("softmax.stable", "largest error", who("axis0")),
]


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> tuple[Path, dict]:
    """The class, graded by `grade`, and its insight.json."""
    root = tmp_path_factory.mktemp("insight")
    folder = root / "class"
    for variant, (answers, count) in CLASS.items():
        for i in range(count):
            (folder / f"{variant}-{i:02d}").mkdir(parents=True)
            nbformat.write(notebook(answers), folder / f"{variant}-{i:02d}" / f"{LESSON}.ipynb")
    course = root / "course"
    out = course / "graded" / LESSON
    run = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", str(folder), "--lesson", "01",
         "--course", str(course), "--out", str(out), "--workers", "2", "--no-progress",
         *isolation_flags()], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    run = subprocess.run(
        [sys.executable, "-m", "autograder", "insight", "--lesson", "01", "--course",
         str(course), "--below", "50"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return out, json.loads((out / "insight.json").read_text())


def test_every_mistake_is_counted_with_its_learners(graded):
    """Is each known mistake one group, with exactly the learners who made it, ranked?"""
    _, data = graded
    assert data["learners"] == 40
    found = {(m["check"], m["message"]): m for m in data["mistakes"]}
    assert len(data["mistakes"]) == len(MISTAKES), [m["mistake"] for m in data["mistakes"]]
    for check, phrase, learners in MISTAKES:
        group = [m for (c, msg), m in found.items() if c == check and phrase in msg]
        assert len(group) == 1, (check, phrase, list(found))
        assert sorted(group[0]["learners"]) == learners
        assert group[0]["count"] == len(learners)
        assert group[0]["share"] == pytest.approx(len(learners) / 40, abs=1e-4)
    counts = [m["count"] for m in data["mistakes"]]
    assert counts == sorted(counts, reverse=True)


def test_exercise_of_each_mistake(graded):
    """Is each mistake filed under the exercise its check tests?"""
    _, data = graded
    for m in data["mistakes"]:
        assert m["exercise"] == m["check"].split(".")[0]


def test_untouched_exercises_are_counted_not_called_mistakes(graded):
    """Are stubs counted per exercise (and their failing tests kept out of the mistakes)?"""
    _, data = graded
    untouched = {u["exercise"]: u["learners"] for u in data["untouched"]}
    assert untouched == {"softmax": who("untouched"), "blanks": who("untouched"),
                         "attend": who("untouched", "attend-stub")}
    assert data["mostly_untouched"] == []
    everyone = {s for m in data["mistakes"] for s in m["learners"]}
    assert not everyone & set(who("untouched", "attend-stub"))


def test_crash_is_a_problem_not_a_mistake(graded):
    """Is the learner whose kernel died listed with the run's problem, and no mistake?"""
    _, data = graded
    problems = {p["learner"]: " ".join(p["issues"]) for p in data["problems"]}
    assert set(problems) == set(who("crash"))
    assert "kernel died" in problems["crash-00"]
    assert "crash-00" not in {s for m in data["mistakes"] for s in m["learners"]}


def test_scores_below_threshold_and_extreme_tests(graded):
    """Are learners under half the points, and the test nearly all pass, named?"""
    _, data = graded
    # half of 8 points: the untouched (0) and the crash (softmax's 3 points, nothing after)
    assert [b["learner"] for b in data["below"]["learners"]] == who("untouched", "crash")
    assert data["below"]["points"] == 4.0
    # blanks_format fails only without an answer: untouched (3) and crash (1) -> 36/40
    assert data["almost_everybody_passes"] == ["blanks_format"]
    assert data["almost_nobody_passes"] == []
    tests = {t["test"]: t for t in data["tests"]}
    assert tests["softmax_stable"]["zero"] == 5 + 3 + 2 + 3  # noshift(+scaled), axis0, stub
    assert tests["softmax_stable"]["full"] == 40 - 13


def test_progress_and_distribution_match_the_gradebook(graded):
    """Does progress hold each learner's share of lesson 01, from the same scores?"""
    _, data = graded
    assert data["progress"]["lessons"] == [LESSON]
    assert data["scores"]["correct-00"] == 8.0 and data["scores"]["untouched-00"] == 0.0
    for student, score in data["scores"].items():
        assert data["progress"]["learners"][student][LESSON] == pytest.approx(score / 8)


def test_html_is_self_contained(graded):
    """Is insight.html one file that fetches nothing and runs no script, values escaped?"""
    out, data = graded
    text = (out / "insight.html").read_text()
    assert "<script" not in text.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text)
    assert text.count("data:image/png;base64,") == 3
    assert "`blank_projection` = &#x27;key&#x27;" in text or \
        "`blank_projection` = &#x27;query&#x27;" in text


@pytest.mark.browser
def test_report_renders_in_chromium(graded):
    """Does Chromium show the report (plots loaded, the mistakes table) with no request?"""
    from browser.lab import CHROMIUM_FLAGS, ensure_chromium
    from playwright.sync_api import sync_playwright

    out, data = graded
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=ensure_chromium(), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.on("request", lambda r: requests.append(r.url))
        page.goto((out / "insight.html").as_uri())
        widths = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
        rows = page.locator("table").nth(1).locator("tr").count()
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "insight.png"), clip={"x": 0, "y": 0, "width": 1100,
                                                             "height": 1900}, full_page=True)
        browser.close()
    assert len(widths) == 3 and all(w > 100 for w in widths)
    assert rows == len(data["mistakes"]) + 1
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []


@pytest.mark.parametrize(("a", "b"), [
    ("Your softmax does not match the reference (a (3, 5) matrix, axis=0). It matches a "
     "softmax over axis 1 instead of axis 0.",
     "Your softmax does not match the reference (a (4, 2) matrix, axis=-1). It matches a "
     "softmax over axis 0 instead of axis -1."),
    ("`blank_projection` = 'key' is not the word", "`blank_projection` = 'query' is not the word"),
    ("Your weight vector has shape (3,) but should have shape (6,).",
     "Your weight vector has shape (2, 4) but should have shape (4,)."),
])
def test_same_mistake_same_key(a, b):
    """Do messages that differ only in numbers, values or the case name one mistake?"""
    assert mistake_key(a) == mistake_key(b)


@pytest.mark.parametrize(("a", "b"), [
    ("`blank_projection` = 'key' is not the word", "`blank_normaliser` = 'key' is not the word"),
    ("Your output contains NaN (scores near 1000).",
     "Your output contains inf (scores near 1000)."),
])
def test_different_mistakes_different_keys(a, b):
    """Do messages naming different things stay apart?"""
    assert mistake_key(a) != mistake_key(b)

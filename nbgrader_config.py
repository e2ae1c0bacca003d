"""nbgrader configuration: the repository root is the course root.

The instructor source lives in solutions/ and the learner release in lessons/
(nbgrader calls them source/ and release/).
"""

import os

c = get_config()  # noqa: F821  (nbgrader injects get_config)
COURSE = os.path.dirname(os.path.abspath(__file__))  # this folder, wherever nbgrader runs

c.CourseDirectory.course_id = "attention-lab"
c.CourseDirectory.root = COURSE
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "lessons"
# lessons are the folders named NN_slug; anything else in solutions/ is not an assignment
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".*"]

# Learner-facing stub for code answers; markdown answers get nbgrader's default text stub.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}

# Warnings printed by correct code never cost points: nbgrader fails a test cell that
# writes to stderr, so drop stderr output that is only warnings.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = r"\A(?:[^\n]*Warning: [^\n]*\n?(?:[ \t][^\n]*\n?)*)+\Z"

# Execution budget for autograding (issue: grading at scale tightens these).
c.Execute.timeout = 120
c.Execute.interrupt_on_timeout = True
# nbclient can miss a cell's reply when the cell shows an ipywidgets Output widget and wait
# out the whole timeout (jupyter/nbclient#312): its kernel client, with that race closed
# (nbgrader's Execute always builds an AsyncKernelManager; this sets what client it hands out).
c.AsyncKernelManager.client_factory = "autograder.kernels.KernelClient"

# Keep a flood of output from swamping the gradebook and feedback.
c.LimitOutput.max_lines = 500
c.LimitOutput.max_traceback = 50
# The kernel's own start-up log (e.g. its note on unencrypted local TCP) is not the learner's.
# Every kernel nbgrader starts with this config (autograde, Validate) is a grading run:
# ATTNLAB_GRADING=1 in that kernel only, so lesson 07 trains on its short, stated budget
# (attnlab.tasks.grading_run); kernels started anywhere else train fully.
c.Execute.extra_arguments = [
    "--IPKernelApp.log_level=ERROR",
    "--IPKernelApp.exec_lines=__import__('os').environ.update(ATTNLAB_GRADING='1')",
]

# --- Grading a class: `python -m autograder grade` (autograder/grading/) -----------------
# Each learner's notebook runs in a fresh sandboxed kernel with these limits (the command's
# flags override them). Plain `nbgrader autograde` still works but runs learner code
# unconfined, as the instructor: use `grade` for a class.
c.Grading.cell_timeout = 120          # seconds per cell
c.Grading.notebook_timeout = 900      # seconds per notebook
c.Grading.memory_mb = 2048            # data memory per kernel
c.Grading.processes = 64              # processes + threads per kernel
c.Grading.output_mb = 8               # output per cell
# A learner who deleted a test cell still gets it run (restored from the source); a
# duplicated cell counts once (nbgrader's DeduplicateIds, always on in autograde).
c.OverwriteCells.add_missing_cells = True
try:
    from nbgrader.preprocessors import (
        CheckCellMetadata,
        ClearOutput,
        OverwriteCells,
        OverwriteKernelspec,
    )

    from autograder.grading.nbgrader_hooks import DropDuplicateIds

    # nbgrader's DeduplicateIds, fixed to work with add_missing_cells
    c.Autograde.sanitize_preprocessors = [ClearOutput, DropDuplicateIds, OverwriteKernelspec,
                                          OverwriteCells, CheckCellMetadata]
except ImportError:
    c.OverwriteCells.add_missing_cells = False
# One feedback folder for grade, `python -m autograder feedback` and nbgrader's own
# generate_feedback: graded/feedback/<student>/<lesson>/<lesson>.html (git-ignored).
c.CourseDirectory.feedback_directory = os.path.join("graded", "feedback")
# The exchange (nbgrader release/fetch/submit, formgrader's banner) lives in the course
# folder, git-ignored; nbgrader requires it to exist.
c.Exchange.root = os.path.join(COURSE, ".exchange")
try:
    os.makedirs(c.Exchange.root, exist_ok=True)
except OSError:  # a read-only checkout: nbgrader says so when the exchange is used
    pass
# Plain `nbgrader autograde` on a fresh clone: the lesson is registered in the gradebook
# first (a scratch generate_assignment; lessons/ is not touched).
try:
    from autograder.grading.nbgrader_hooks import register_lesson

    c.Autograde.pre_convert_hook = register_lesson
except ImportError:
    pass
# Feedback (grade's, and nbgrader's own generate_feedback) never shows hidden tests: their
# source is cut from test cells, tracebacks are reduced to their message, and a learner's
# HTML/JavaScript output is sanitised. A test's diagnosis is wrapped, rendered text; written
# answers not yet graded by hand are named as such.
try:
    from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor

    from autograder.grading.nbgrader_hooks import GetGradesPending, HideHiddenTests

    c.GenerateFeedback.preprocessors = [GetGradesPending, CSSHTMLHeaderPreprocessor,
                                        HideHiddenTests]
    c.GenerateFeedback.HTMLExporter.sanitize_html = True
except ImportError:  # the course package is not installed here: nbgrader's defaults
    pass
# Formgrader: under each written answer to grade by hand, the model answer and rubric from
# the lesson's solution (autograder/grading/model_answers.py). It acts on formgrader's page
# only; feedback's exporter gets no such preprocessor.
try:
    from autograder.grading.model_answers import ShowModelAnswers

    c.HTMLExporter.preprocessors = [ShowModelAnswers]
    c.GenerateFeedback.HTMLExporter.preprocessors = []
except ImportError:
    pass

"""nbgrader configuration: the repository root is the course root.

The instructor source lives in solutions/ and the learner release in lessons/
(nbgrader calls them source/ and release/).
"""

c = get_config()  # noqa: F821  (nbgrader injects get_config)

c.CourseDirectory.course_id = "attention-lab"
c.CourseDirectory.root = "."
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

# Keep a flood of output from swamping the gradebook and feedback.
c.LimitOutput.max_lines = 500
c.LimitOutput.max_traceback = 50
# The kernel's own start-up log (e.g. its note on unencrypted local TCP) is not the learner's.
c.Execute.extra_arguments = ["--IPKernelApp.log_level=ERROR"]

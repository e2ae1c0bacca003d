"""nbgrader for an instructor's server on the hub: the course's own configuration
(nbgrader_config.py at the repository root: preprocessors, limits, feedback without hidden
tests), pointed at the hub's course folder and exchange (set by the hub's spawner).
"""

import os
from pathlib import Path

c = get_config()  # noqa: F821  (nbgrader injects get_config)

load_subconfig(str(Path(__file__).resolve().parents[3] / "nbgrader_config.py"))  # noqa: F821

course = os.environ["ATTNLAB_COURSE_DIR"]
c.CourseDirectory.root = course
c.CourseDirectory.db_url = f"sqlite:///{course}/gradebook.db"
c.Exchange.root = os.environ["ATTNLAB_EXCHANGE"]
c.Exchange.path_includes_course = True

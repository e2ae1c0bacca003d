"""nbgrader for a learner's server on the hub: the course's exchange, nothing else.

The hub's spawner sets ATTNLAB_EXCHANGE; fetched lessons go to ~/attention-lab/NN_x.
"""

import os

c = get_config()  # noqa: F821  (nbgrader injects get_config)

c.CourseDirectory.course_id = "attention-lab"
c.Exchange.root = os.environ["ATTNLAB_EXCHANGE"]
c.Exchange.path_includes_course = True

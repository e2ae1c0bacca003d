"""nbgrader settings for a learner's `make lab` (its Validate button), outside the course root.

Validate is a grading run: the kernel it starts gets ATTNLAB_GRADING=1 (that kernel only),
so lesson 07 trains on its short, stated budget; the learner's own kernels train fully.
The course root's nbgrader_config.py does the same for autograde and an instructor's Validate.
"""

c = get_config()  # noqa: F821  (nbgrader injects get_config)

c.Execute.extra_arguments = [
    "--IPKernelApp.log_level=ERROR",
    "--IPKernelApp.exec_lines=__import__('os').environ.update(ATTNLAB_GRADING='1')",
]

# nbclient can miss a cell's reply when the cell shows an ipywidgets Output widget and wait
# out the whole timeout (jupyter/nbclient#312): its kernel client, with that race closed
# (nbgrader's Execute always builds an AsyncKernelManager; this sets what client it hands out).
c.AsyncKernelManager.client_factory = "autograder.kernels.KernelClient"

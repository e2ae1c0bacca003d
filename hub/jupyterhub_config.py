"""JupyterHub for one class of this course on one Linux machine (run as root: `make hub`).

Everything is JupyterHub's or nbgrader's own; this file only wires them together:

- accounts: system users made from the roster by hub/roster.py; the hub admits the unix
  group ``attnlab`` and logs people in with PAM (their system password);
- servers: hub/spawner.py's ClassSpawner (LocalProcessSpawner, learner or instructor
  JupyterLab from this project's environment, a memory cgroup per member);
- state on disk under ATTNLAB_HUB_DIR: the hub's database and cookie secret (state/), the
  course folder with its gradebook (course/) and nbgrader's exchange (class/exchange/);
  restarting the hub loses nothing;
- jupyterhub-idle-culler stops servers idle for ATTNLAB_CULL_TIMEOUT seconds.

Settings come from the environment (the Makefile's variables): ATTNLAB_HUB_DIR,
ATTNLAB_HUB_IP (127.0.0.1), ATTNLAB_HUB_PORT (8000), ATTNLAB_MEM_LIMIT (2G),
ATTNLAB_CULL_TIMEOUT (3600), ATTNLAB_HUB_API_PORT (8081),
ATTNLAB_PROXY_API_PORT (8001), ATTNLAB_CHP (the configurable-http-proxy command).
"""

import grp
import os
import sys
from pathlib import Path

HUB = Path(__file__).resolve().parent
sys.path.insert(0, str(HUB))

from roster import CLASS_GROUP, ROLE_GROUPS  # noqa: E402
from runtime import class_python_bin  # noqa: E402
from spawner import ClassSpawner  # noqa: E402

c = get_config()  # noqa: F821  (JupyterHub injects get_config)

hub_dir = Path(os.environ.get("ATTNLAB_HUB_DIR", "/srv/attention-lab"))
state = hub_dir / "state"
venv_bin = Path(sys.executable).parent

c.JupyterHub.bind_url = (f"http://{os.environ.get('ATTNLAB_HUB_IP', '127.0.0.1')}:"
                         f"{os.environ.get('ATTNLAB_HUB_PORT', '8000')}")
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(os.environ.get("ATTNLAB_HUB_API_PORT", "8081"))
c.ConfigurableHTTPProxy.api_url = \
    f"http://127.0.0.1:{os.environ.get('ATTNLAB_PROXY_API_PORT', '8001')}"
c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
c.ConfigurableHTTPProxy.pid_file = str(state / "jupyterhub-proxy.pid")
c.ConfigurableHTTPProxy.command = [os.environ.get(
    "ATTNLAB_CHP", str(venv_bin.parent / "node" / "node_modules" / ".bin" /
                       "configurable-http-proxy"))]

# --- who may log in: the roster's unix groups, through PAM -----------------------------
c.JupyterHub.authenticator_class = "pam"
c.PAMAuthenticator.allowed_groups = {CLASS_GROUP}
c.PAMAuthenticator.open_sessions = False  # no login session per server (no systemd here)
# instructors manage the class's servers from the hub's admin page, but cannot open a
# learner's server or files (no access:servers); read at start: a new instructor mid-term
# needs a hub restart, a new learner does not
try:
    instructors = grp.getgrnam(ROLE_GROUPS["instructor"]).gr_mem
except KeyError:
    instructors = []
c.JupyterHub.load_roles = [
    {"name": "instructor", "users": instructors,
     "scopes": ["self", "admin-ui", "list:users", "read:users", "admin:servers"]},
    {"name": "idle-culler", "services": ["idle-culler"],
     "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"]},
]

# --- each member's server --------------------------------------------------------------
c.JupyterHub.spawner_class = ClassSpawner
# the project's environment, through a bridge if its Python is not runnable by the class
c.Spawner.cmd = [str(class_python_bin(venv_bin, hub_dir / "runtime") /
                     "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab"
c.Spawner.mem_limit = os.environ.get("ATTNLAB_MEM_LIMIT", "2G")
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
c.ClassSpawner.course_dir = str(hub_dir / "course")
c.ClassSpawner.exchange_dir = str(hub_dir / "class" / "exchange")

# --- an unattended class cannot keep the machine busy -----------------------------------
c.JupyterHub.services = [{
    "name": "idle-culler",
    "command": [sys.executable, "-m", "jupyterhub_idle_culler",
                f"--timeout={os.environ.get('ATTNLAB_CULL_TIMEOUT', '3600')}"],
}]

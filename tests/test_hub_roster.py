"""The class roster (hub/roster.py): every bad line is one clear line and touches nothing.

Also the Kubernetes values file (deploy/k8s/values.yaml) is valid YAML with the keys
zero-to-jupyterhub reads. No hub, no accounts: these run anywhere.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from autograder.course import ROOT
from hub import roster

HEADER = "username,role,full name"


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "roster.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_roster_reads_into_members(tmp_path):
    path = write(tmp_path, HEADER, "teach,instructor,Ada Lovelace", "",
                 "# a comment", "al-1,learner,\"Liddell, Alice\"")
    members = roster.read_roster(path)
    assert [(m.username, m.role, m.full_name, m.line) for m in members] == [
        ("teach", "instructor", "Ada Lovelace", 2), ("al-1", "learner", "Liddell, Alice", 5)]


@pytest.mark.parametrize("lines, message", [
    (["teach,instructor,T", "ann,learner,A", "ann,learner,Ann B"],
     r":4: duplicate username 'ann' \(already on line 3\)"),
    (["teach,instructor,T", "Ann B,learner,A"], r":3: invalid username 'Ann B'"),
    (["teach,instructor,T", "9ann,learner,A"], r":3: invalid username '9ann'"),
    (["teach,instructor,T", "ann,student,A"], r":3: role must be 'learner' or 'instructor'"),
    (["teach,instructor,T", "ann,learner"], r":3: expected 3 fields"),
    (["teach,instructor,T", "ann,learner,"], r":3: a full name is needed"),
    (["ann,learner,A"], r": no instructor in the roster"),
])
def test_a_bad_line_is_named(tmp_path, lines, message):
    path = write(tmp_path, HEADER, *lines)
    with pytest.raises(roster.RosterError, match=message) as info:
        roster.read_roster(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_a_missing_header_is_named(tmp_path):
    with pytest.raises(roster.RosterError, match=r":1: the first line must be the header"):
        roster.read_roster(write(tmp_path, "ann,learner,A"))


def test_a_system_account_is_refused(tmp_path):
    path = write(tmp_path, HEADER, "teach,instructor,T", "daemon,learner,D")
    with pytest.raises(roster.RosterError, match=r":3: 'daemon' is a system account"):
        roster._check_existing(roster.read_roster(path), path)


def test_the_command_prints_one_line_and_makes_nothing(tmp_path):
    """A bad roster stops the command before any account or folder is made."""
    path = write(tmp_path, HEADER, "teach,instructor,T", "ann,learner,A", "ann,learner,B")
    hub_dir = tmp_path / "hub"
    done = subprocess.run([sys.executable, str(ROOT / "hub" / "roster.py"), str(path),
                           "--hub-dir", str(hub_dir)], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "duplicate username 'ann'" in done.stderr
    assert not hub_dir.exists()


def test_the_k8s_values_are_yaml_for_zero_to_jupyterhub():
    values = yaml.safe_load((ROOT / "deploy" / "k8s" / "values.yaml").read_text())
    assert set(values) <= {"hub", "proxy", "singleuser", "cull", "scheduling", "prePuller"}
    assert values["cull"]["enabled"] is True
    assert values["singleuser"]["memory"]["limit"]
    assert values["hub"]["config"]["JupyterHub"]["authenticator_class"]
    mounts = {m["mountPath"] for m in values["singleuser"]["storage"]["extraVolumeMounts"]}
    assert "/srv/nbgrader/exchange" in mounts

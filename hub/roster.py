"""A class roster made into system users and the hub's folders, as The Littlest JupyterHub does.

The roster is a CSV file with a header line ``username,role,full name`` and one member a
line; ``role`` is ``learner`` or ``instructor``. Run as root::

    python hub/roster.py roster.csv --hub-dir /srv/attention-lab

Every member becomes a system user (``useradd``) in the group ``attnlab`` and in
``attnlab-learners`` or ``attnlab-instructors``; the hub admits exactly these groups, so
adding a learner mid-term is one more roster line and this command again (no hub restart).
A new account gets a random initial password, appended to ``HUB/state/passwords.csv``
(mode 0600, root only), which the instructor hands out; an existing account keeps its
password. A bad line stops everything before any account is touched, with one line
naming the file, the line and the fault.

Standard library only: the hub's configuration imports this module without the course
package.
"""

from __future__ import annotations

import argparse
import csv
import grp
import os
import pwd
import re
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

COURSE_ID = "attention-lab"
CLASS_GROUP = "attnlab"
ROLE_GROUPS = {"learner": "attnlab-learners", "instructor": "attnlab-instructors"}
# Debian's own rule for user names (adduser NAME_REGEX), at most 32 characters
USERNAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
FIRST_REGULAR_UID = 1000


class RosterError(ValueError):
    """A roster or account fault, as one line for the person who runs the command."""


@dataclass(frozen=True)
class Member:
    username: str
    role: str
    full_name: str
    line: int


def read_roster(path: Path) -> list[Member]:
    """Every member of the roster, or a RosterError naming the first bad line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise RosterError(f"{path}: cannot read the roster ({exc.strerror})") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows or [c.strip().lower() for c in rows[0]] != ["username", "role", "full name"]:
        raise RosterError(f"{path}:1: the first line must be the header "
                          "'username,role,full name'")
    members: list[Member] = []
    first_line: dict[str, int] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row) or row[0].lstrip().startswith("#"):
            continue
        member = _member(path, number, row)
        if member.username in first_line:
            raise RosterError(f"{path}:{number}: duplicate username '{member.username}' "
                              f"(already on line {first_line[member.username]})")
        first_line[member.username] = number
        members.append(member)
    if not any(m.role == "instructor" for m in members):
        raise RosterError(f"{path}: no instructor in the roster (at least one line with "
                          "role 'instructor' is needed)")
    return members


def _member(path: Path, number: int, row: list[str]) -> Member:
    if len(row) != 3:
        raise RosterError(f"{path}:{number}: expected 3 fields (username,role,full name), "
                          f"found {len(row)}")
    username, role, full_name = (c.strip() for c in row)
    if not USERNAME.match(username):
        raise RosterError(f"{path}:{number}: invalid username '{username}' (lower-case "
                          "letters, digits, '_' and '-', starting with a letter, at most 32)")
    if role not in ROLE_GROUPS:
        raise RosterError(f"{path}:{number}: role must be 'learner' or 'instructor', "
                          f"not '{role}'")
    if not full_name or any(ch in full_name for ch in ":\n"):
        raise RosterError(f"{path}:{number}: a full name is needed (and may not contain ':')")
    return Member(username, role, full_name, number)


# ----------------------------------------------------------------------------- accounts


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RosterError(f"`{' '.join(cmd)}` failed: {result.stderr.strip()}")


def _ensure_group(name: str) -> None:
    try:
        grp.getgrnam(name)
    except KeyError:
        _run(["groupadd", name])


def _check_existing(members: list[Member], roster: Path) -> None:
    """An account that exists already must be a regular one (never root or a daemon)."""
    for m in members:
        try:
            uid = pwd.getpwnam(m.username).pw_uid
        except KeyError:
            continue
        if uid < FIRST_REGULAR_UID:
            raise RosterError(f"{roster}:{m.line}: '{m.username}' is a system account "
                              f"(uid {uid}), not a class member")


def sync_users(members: list[Member], roster: Path, hub_dir: Path) -> list[str]:
    """Create missing accounts (with an initial password), fix groups; returns those created."""
    _check_existing(members, roster)
    for group in (CLASS_GROUP, *ROLE_GROUPS.values()):
        _ensure_group(group)
    created = []
    for m in members:
        groups = f"{CLASS_GROUP},{ROLE_GROUPS[m.role]}"
        try:
            pwd.getpwnam(m.username)
        except KeyError:
            _run(["useradd", "--create-home", "--shell", "/bin/bash", "--comment",
                  m.full_name, "--groups", groups, m.username])
            _set_password(m, hub_dir)
            created.append(m.username)
        else:
            _run(["usermod", "--append", "--groups", groups, "--comment", m.full_name,
                  m.username])
        # a learner's files are theirs alone: other learners cannot even list them
        os.chmod(pwd.getpwnam(m.username).pw_dir, 0o700)
    return created


def _set_password(m: Member, hub_dir: Path) -> None:
    password = secrets.token_urlsafe(12)
    subprocess.run(["chpasswd"], input=f"{m.username}:{password}\n", text=True, check=True,
                   capture_output=True)
    passwords = hub_dir / "state" / "passwords.csv"
    new = not passwords.exists()
    fd = os.open(passwords, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        if new:
            writer.writerow(["username", "role", "full name", "initial password"])
        writer.writerow([m.username, m.role, m.full_name, password])
    os.chmod(passwords, 0o600)


# ----------------------------------------------------------------------------- folders


def layout(hub_dir: Path, instructor: str, course_seed: Path | None = None) -> dict[str, Path]:
    """The hub's folders, with the tightest permissions nbgrader's exchange still works with.

    ``state/`` (hub database, cookie secret, passwords) is root's alone. ``course/`` (source,
    gradebook, submitted/, autograded/, graded/feedback/) belongs to the instructors' group. The
    exchange root must be world-writable for nbgrader (it resets any other mode), so it sits
    inside ``class/``, which only class members can traverse; it carries the sticky bit so
    no one can rename or delete another's entry, and the course's exchange folder is made
    here, by the instructor, before any learner could claim the name. nbgrader itself makes
    ``inbound/`` write-only for learners (0733: no listing) with unguessable names.
    """
    owner = pwd.getpwnam(instructor)
    class_gid = grp.getgrnam(CLASS_GROUP).gr_gid
    staff_gid = grp.getgrnam(ROLE_GROUPS["instructor"]).gr_gid
    paths = {"state": hub_dir / "state", "course": hub_dir / "course",
             "class": hub_dir / "class", "exchange": hub_dir / "class" / "exchange"}
    hub_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(hub_dir, 0o755)
    _dir(paths["state"], 0, 0, 0o700)
    fresh = not paths["course"].exists()
    _dir(paths["course"], owner.pw_uid, staff_gid, 0o2770)
    if fresh and course_seed is not None:
        _seed_course(course_seed, paths["course"], owner.pw_uid, staff_gid)
    _dir(paths["class"], 0, class_gid, 0o710)
    _dir(paths["exchange"], 0, 0, 0o1777)
    course_exchange = paths["exchange"] / COURSE_ID
    if not course_exchange.exists():
        _dir(course_exchange, owner.pw_uid, staff_gid, 0o755)
    return paths


def _dir(path: Path, uid: int, gid: int, mode: int) -> None:
    path.mkdir(exist_ok=True)
    st = path.lstat()
    if not path.is_dir() or path.is_symlink():
        raise RosterError(f"{path}: expected a folder")
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.chown(path, uid, gid)
    os.chmod(path, mode)


def _seed_course(repo: Path, course: Path, uid: int, gid: int) -> None:
    """A new course folder: the lessons' nbgrader source and release (never overwritten)."""
    for name in ("solutions", "lessons"):
        shutil.copytree(repo / name, course / name, ignore=shutil.ignore_patterns(
            ".ipynb_checkpoints", "__pycache__"))
    for root, dirs, files in os.walk(course):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid)
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o2770)
        for name in files:
            os.chmod(os.path.join(root, name), 0o660)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Make a class roster (CSV: username,role,full "
                                            "name) into system users and the hub's folders.")
    p.add_argument("roster", type=Path)
    p.add_argument("--hub-dir", type=Path, required=True)
    p.add_argument("--seed", type=Path, default=Path(__file__).resolve().parents[1],
                   help="the course repository whose lessons seed a new course folder")
    p.add_argument("--check", action="store_true", help="only check the roster")
    args = p.parse_args(argv)
    try:
        members = read_roster(args.roster)
        if args.check:
            print(f"{args.roster}: {len(members)} members, all lines valid")
            return 0
        if os.geteuid() != 0:
            raise RosterError("run as root: accounts and the hub's folders are made here")
        args.hub_dir.mkdir(parents=True, exist_ok=True)
        (args.hub_dir / "state").mkdir(mode=0o700, exist_ok=True)
        created = sync_users(members, args.roster, args.hub_dir)
        instructor = next(m.username for m in members if m.role == "instructor")
        layout(args.hub_dir, instructor, args.seed)
    except RosterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    learners = sum(m.role == "learner" for m in members)
    print(f"{learners} learners, {len(members) - learners} instructors; new accounts: "
          f"{', '.join(created) or 'none'}"
          + (f" (initial passwords in {args.hub_dir / 'state' / 'passwords.csv'})"
             if created else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Confine one learner's kernel with the operating system's own mechanisms.

This module runs inside the fork server (``zygote.py``), in the child forked for one
submission, *before* any learner code exists in that process. It is copied into the
sandbox image next to the zygote and uses nothing but the standard library (ctypes for
the Linux system calls Python 3.11 does not wrap).

Three modes, chosen once per run and reported to the instructor:

``root``    (Linux, run as root, e.g. CI): new mount, PID, network, IPC and UTS
            namespaces; a fresh root file system built from read-only binds of the system
            and interpreter folders plus private tmpfs mounts for ``/home/learner`` (the
            submission's files), ``/tmp`` and ``/dev/shm``; ``chroot``; a per-worker
            unprivileged uid/gid with no supplementary groups, ``no_new_privs`` and no
            capabilities; rlimits (memory, processes, files, CPU, core dumps).
``userns``  (Linux, unprivileged user namespaces allowed): the same, inside a user
            namespace that maps the instructor's uid to root; capabilities are dropped
            before the kernel starts, so learner code runs as the instructor's uid with
            no privileges and sees none of the instructor's files.
``none``    (anything else): rlimits and a scratch working directory only. The grader
            prints a loud warning: learner code can then read the instructor's files.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import shutil
import signal
import socket
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC = 32, 4096, 16384
MS_PRIVATE = 1 << 18

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38

SANDBOX_HOME = "/home/learner"
SANDBOX_RUN = "/run/attnlab"

_libc = None


def libc():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


def _check(result: int, what: str) -> int:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def unshare(flags: int) -> None:
    _check(libc().unshare(ctypes.c_int(flags)), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int,
          data: str | None = None) -> None:
    enc = (lambda s: None if s is None else s.encode())
    _check(libc().mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags),
                        enc(data)), f"mount {target}")


def threads() -> int:
    """This process's threads (forking is only safe with one)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        import threading

        return threading.active_count()


def prctl(option: int, arg: int) -> None:
    _check(libc().prctl(ctypes.c_int(option), ctypes.c_ulong(arg), ctypes.c_ulong(0),
                        ctypes.c_ulong(0), ctypes.c_ulong(0)), f"prctl {option}")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(libc().sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname")


def drop_capabilities() -> None:
    """Empty the effective, permitted, inheritable and bounding sets (userns mode)."""
    for cap in range(64):
        try:
            prctl(PR_CAPBSET_DROP, cap)
        except OSError:
            break

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    header = Header(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (Data * 2)()
    _check(libc().capset(ctypes.byref(header), ctypes.byref(data)), "capset")


# ----------------------------------------------------------------------------- probing


def probe_mode(requested: str = "auto") -> tuple[str, str]:
    """The strongest mode this machine allows, and why weaker ones were chosen."""
    if not sys.platform.startswith("linux"):
        return "none", f"{sys.platform} has no Linux namespaces"
    if requested == "none":
        return "none", "isolation switched off (--isolation none)"
    if os.geteuid() == 0 and requested in ("auto", "root"):
        reason = _probe_child(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC)
        if reason is None:
            return "root", ""
        if requested == "root":
            return "none", f"namespaces refused even to root ({reason})"
    reason = _probe_child(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET,
                          userns=True)
    if reason is None:
        return "userns", ""
    return "none", f"unprivileged user namespaces are not available ({reason})"


def _probe_child(flags: int, userns: bool = False) -> str | None:
    """Fork a child that tries ``unshare(flags)``; None if it worked, else the error."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(read)
        try:
            uid, gid = os.getuid(), os.getgid()
            unshare(flags)
            if userns:
                _map_user(uid, gid)
            mount(None, "/", None, MS_REC | MS_PRIVATE)
            os.write(write, b"ok")
        except BaseException as exc:  # noqa: BLE001 - any failure is the answer
            os.write(write, str(exc).encode()[:300] or b"failed")
        os._exit(0)
    os.close(write)
    answer = os.read(read, 400).decode(errors="replace")
    os.close(read)
    os.waitpid(pid, 0)
    return None if answer == "ok" else answer


def _map_user(uid: int, gid: int) -> None:
    with open("/proc/self/setgroups", "w") as fh:
        fh.write("deny")
    with open("/proc/self/uid_map", "w") as fh:
        fh.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as fh:
        fh.write(f"0 {gid} 1")


# ----------------------------------------------------------------------------- confining


def _bind(src: str, root: str, dst: str, readonly: bool = True) -> None:
    target = root + dst
    if os.path.isdir(src):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            open(target, "w").close()
    mount(src, target, None, MS_BIND | MS_REC)
    flags = MS_BIND | MS_REMOUNT | MS_NOSUID | (MS_RDONLY if readonly else 0)
    if dst.startswith("/dev/") is False:
        flags |= MS_NODEV
    mount(None, target, None, flags)


def _tmpfs(root: str, dst: str, size_mb: int, mode: str, owner: tuple[int, int] | None) -> None:
    target = root + dst
    os.makedirs(target, exist_ok=True)
    opts = f"size={max(1, size_mb)}m,mode={mode}"
    if owner is not None:
        opts += f",uid={owner[0]},gid={owner[1]}"
    mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, opts)


def build_root(spec: dict, owner: tuple[int, int]) -> str:
    """Mount the sandbox's file system under spec['root'] (in a private mount namespace)."""
    root = spec["root"]
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    size = int(spec["tmpfs_mb"])
    _tmpfs(root, "/tmp", size, "1777", None)  # before the binds: some may live under /tmp
    _tmpfs(root, SANDBOX_HOME, size, "0700", owner)
    for src, dst in spec["ro_binds"]:
        if os.path.exists(src):
            _bind(src, root, dst)
    for dst in spec.get("masks", []):  # e.g. an installed copy of the real autograder
        if os.path.isdir(root + dst):
            mount("tmpfs", root + dst, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=1k")
    os.makedirs(root + "/dev", exist_ok=True)
    mount("tmpfs", root + "/dev", "tmpfs", MS_NOSUID, "size=64k,mode=0755")
    for dev in ("null", "zero", "full", "random", "urandom"):
        _bind(f"/dev/{dev}", root, f"/dev/{dev}", readonly=False)
    _tmpfs(root, "/dev/shm", size, "1777", None)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{root}/dev/{name}")
    _bind(spec["run"], root, SANDBOX_RUN, readonly=False)
    os.makedirs(root + "/proc", exist_ok=True)
    # the submission's files, owned by the learner's uid, in a private tmpfs
    home = root + SANDBOX_HOME
    for name in sorted(os.listdir(spec["files"])):
        src = os.path.join(spec["files"], name)
        dst = os.path.join(home, name)
        if os.path.islink(src):
            continue
        if os.path.isdir(src):
            shutil.copytree(src, dst, symlinks=True)
        elif os.path.isfile(src):
            shutil.copyfile(src, dst)
    for dirpath, dirnames, filenames in os.walk(home):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), *owner)
    return root


def set_limits(limits: dict) -> None:
    mb = 1 << 20

    def setl(which: int, value: int) -> None:
        soft, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))

    setl(resource.RLIMIT_CORE, 0)
    if limits.get("memory_mb"):
        setl(resource.RLIMIT_DATA, int(limits["memory_mb"]) * mb)
        setl(resource.RLIMIT_AS, int(limits["address_space_mb"]) * mb)
    if limits.get("processes"):
        setl(resource.RLIMIT_NPROC, int(limits["processes"]))
    if limits.get("file_mb"):
        setl(resource.RLIMIT_FSIZE, int(limits["file_mb"]) * mb)
    if limits.get("open_files"):
        setl(resource.RLIMIT_NOFILE, int(limits["open_files"]))
    if limits.get("cpu_s"):
        setl(resource.RLIMIT_CPU, int(limits["cpu_s"]))


def _close_fds() -> None:
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    os.closerange(3, 65536)


def confine_and_fork(spec: dict, report_pid) -> None:
    """In the child forked for one submission: enter the sandbox.

    Three processes result. The *middle* stays outside (in the fork server's PID
    namespace), reports the host pid of the *init* and waits for it. The *init* is pid 1 of
    the new PID namespace: it reaps every orphan (so zombies never eat the process cap),
    forwards SIGINT (an interrupt) to the kernel and exits when the kernel does, which tears
    the whole namespace down. The *kernel* drops every privilege and returns from this
    function to become the learner's IPython kernel; the other two never return.
    ``report_pid(pid)`` is called in the middle process with the init's host pid.
    """
    mode = spec["mode"]
    uid, gid = spec["uid"], spec["gid"]
    os.setsid()
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the fork server died: so do we
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    root = None
    if mode in ("root", "userns"):
        flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
        if mode == "userns":
            real_uid, real_gid = os.getuid(), os.getgid()
            unshare(CLONE_NEWUSER | flags)
            _map_user(real_uid, real_gid)
            owner = (0, 0)
        else:
            unshare(flags)
            owner = (uid, gid)
        try:
            loopback_up()
        except OSError:
            pass
        root = build_root(spec, owner)
    init = os.fork()
    if init:  # the middle process
        report_pid(init)
        _close_fds()
        _wait_for(init)
    # the init: pid 1 of the new PID namespace (or a subreaper in "none" mode)
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    prctl(PR_SET_DUMPABLE, 0)
    if root is not None:
        mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        os.chroot(root)
        os.chdir(SANDBOX_HOME)
        try:
            sethostname("sandbox")
        except OSError:
            pass
    else:
        PR_SET_CHILD_SUBREAPER = 36
        prctl(PR_SET_CHILD_SUBREAPER, 1)
        os.chdir(spec["files"])
    kernel = os.fork()
    if kernel:
        def forward(signum, frame):
            try:
                os.kill(kernel, signum)
            except OSError:
                pass
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, forward)
        _close_fds()
        _wait_for(kernel, reap_all=True)
    # the kernel
    limits = dict(spec["limits"])
    if mode != "root":  # RLIMIT_NPROC counts every process of the uid: here, the instructor's
        limits.pop("processes", None)
    set_limits(limits)
    if mode == "root":
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    elif mode == "userns":
        drop_capabilities()
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # cleared by the uid change: set it again
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)
    _close_fds()
    os.environ.clear()
    os.environ.update(spec["env"])
    if mode == "none":
        os.environ["HOME"] = spec["files"]


def _wait_for(pid: int, reap_all: bool = False) -> None:
    """Wait for ``pid`` (reaping any other child on the way) and exit with its status."""
    code = 0
    while True:
        try:
            done, status = os.waitpid(-1 if reap_all else pid, 0)
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if done == pid:
            code = os.waitstatus_to_exitcode(status)
            break
    os._exit(code & 0xFF if code >= 0 else 128 + (-code & 0x7F))


def loopback_up() -> None:
    """Bring ``lo`` up in the new network namespace (learners may use localhost)."""
    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    import fcntl
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(s, SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", flags | IFF_UP, b""))

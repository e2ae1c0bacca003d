"""Length-prefixed pickle frames over a pair of pipes, between trusted processes only.

(The grader and its workers. Nothing learner-controlled is ever unpickled: results from
kernels travel as JSON and are decoded by ``codec``.)
"""

from __future__ import annotations

import os
import pickle
import struct


class Channel:
    def __init__(self, read_fd: int, write_fd: int):
        self.read_fd, self.write_fd = read_fd, write_fd

    def fileno(self) -> int:
        return self.read_fd

    def send(self, obj) -> None:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(struct.pack("<Q", len(data)) + data)
        while view:
            written = os.write(self.write_fd, view)
            view = view[written:]

    def _read(self, n: int) -> bytes:
        chunks, left = [], n
        while left:
            chunk = os.read(self.read_fd, min(left, 1 << 20))
            if not chunk:
                raise EOFError("the other end closed the channel")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def recv(self):
        (length,) = struct.unpack("<Q", self._read(8))
        return pickle.loads(self._read(length))

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass

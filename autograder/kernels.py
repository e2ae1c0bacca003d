"""A kernel client that cannot sleep through a cell's reply (nbclient with ipywidgets).

nbclient waits for a cell's ``execute_reply`` on the shell socket (a ``zmq.asyncio``
socket: it waits for ZeroMQ's file descriptor to become readable). While it waits, an
ipywidgets ``Output`` widget in the cell makes nbclient *send* on that same socket (the
widget's captured outputs go back to the kernel as a ``comm_msg``), and jupyter_client's
``Session.send`` does that through a blocking shadow of the socket. ZeroMQ's descriptor is
edge-triggered: a send processes the socket's pending commands, including "a message
arrived", so when the reply came in just before the send, the descriptor's one edge is
consumed by a send the asyncio wrapper never saw. The reply then sits in the socket while
nbclient waits for the cell's whole timeout (120 s here), interrupts the kernel, and only
then reads it. Reported upstream as jupyter/nbclient#312; seen here in about one check in
ten of lesson 05, whose frequency explorer is such a widget.

After each send, :class:`ShellChannel` asks the asyncio socket for its events, which is
pyzmq's public way to make it look again (``Socket.get(zmq.EVENTS)`` schedules any waiter
whose event is already there). :class:`KernelClient` has that channel; ``check``'s kernels
come from :class:`KernelManager`, and both nbgrader_config.py files make it the client of
the ``AsyncKernelManager`` that nbgrader's ``Execute`` builds (``autograde``, Validate).
``grade`` is not affected: its executor reads with blocking sockets and ``zmq_poll``.

The client's start-up handshake is jupyter_client's (``kernel_info`` until the shell answers
and iopub has spoken) except its last step: jupyter_client then reads iopub until it has
been silent for 0.2 s, so every kernel start waits 0.2 s for nothing. Here it takes what
iopub already holds and stops; a status message of the handshake arriving later is
addressed to the handshake's request, and nbclient skips messages addressed to any request
but its cell's.
"""

from __future__ import annotations

import time
import typing as t
from queue import Empty

import zmq
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel
from jupyter_client.manager import AsyncKernelManager
from traitlets import DottedObjectName, Type


class ShellChannel(AsyncZMQSocketChannel):
    """An asyncio shell channel whose own sends never hide a message from its waiters."""

    def send(self, msg: dict[str, t.Any]) -> None:
        super().send(msg)
        if self.socket is not None and not self.socket.closed:
            self.socket.get(zmq.EVENTS)  # wake a waiter whose reply is already queued


class KernelClient(AsyncKernelClient):
    shell_channel_class = Type(ShellChannel)

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        from jupyter_client.manager import KernelManager as Manager

        if not isinstance(self.parent, Manager):  # not ours to start: jupyter_client's way
            await super().wait_for_ready(timeout=timeout)
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.kernel_info()
            try:
                reply = await self.shell_channel.get_msg(timeout=1)
            except Empty:
                reply = None
            if reply is not None and reply["msg_type"] == "kernel_info_reply":
                try:  # iopub is live once it carries something (the handshake's status)
                    await self.iopub_channel.get_msg(timeout=0.2)
                except Empty:
                    pass
                else:
                    self._handle_kernel_info_reply(reply)
                    break
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if deadline is not None and time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:g} seconds")
        while True:  # what iopub already holds, without waiting for silence
            try:
                await self.iopub_channel.get_msg(timeout=0)
            except Empty:
                break


class KernelManager(AsyncKernelManager):
    """nbclient's default kernel manager, with :class:`KernelClient` clients."""

    client_class = DottedObjectName("autograder.kernels.KernelClient")
    client_factory = Type(KernelClient, klass=AsyncKernelClient, config=True)

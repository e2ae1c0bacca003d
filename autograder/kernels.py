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
"""

from __future__ import annotations

import typing as t

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


class KernelManager(AsyncKernelManager):
    """nbclient's default kernel manager, with :class:`KernelClient` clients."""

    client_class = DottedObjectName("autograder.kernels.KernelClient")
    client_factory = Type(KernelClient, klass=AsyncKernelClient, config=True)

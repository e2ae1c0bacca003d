"""autograder.kernels: a reply that arrives just before the client's own send is still read.

The sequence nbclient runs into with an ipywidgets Output widget (jupyter/nbclient#312),
made deterministic: the client waits for a reply on its asyncio shell socket; the reply
arrives while the event loop is busy; the client then sends on the same socket (nbclient's
widget sync) before the loop looks. A real ROUTER socket plays the kernel.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import zmq
import zmq.asyncio
from jupyter_client.channels import AsyncZMQSocketChannel
from jupyter_client.session import Session

from autograder.kernels import KernelClient, KernelManager, ShellChannel

HANG_S = 5.0  # a wait this long for a reply already queued is a hang


async def _reply_then_send(channel_class) -> str | None:
    """The msg_type the waiting client reads, or None if it is still waiting after HANG_S.

    (Given a timeout, the plain channel reads the reply only when that timeout ends: that
    is the 120 s stall; without one, as here, it would wait for ever.)"""
    actx = zmq.asyncio.Context()
    kernel = zmq.Context.instance().socket(zmq.ROUTER)
    port = kernel.bind_to_random_port("tcp://127.0.0.1")
    session = Session(key=b"secret")
    channel = channel_class(actx.socket(zmq.DEALER), session)
    channel.socket.connect(f"tcp://127.0.0.1:{port}")
    try:
        channel.send(session.msg("execute_request", {"code": "explorer()"}))
        identities, request = session.feed_identities(kernel.recv_multipart())
        parent = session.deserialize(request)
        waiter = asyncio.ensure_future(channel.get_msg(timeout=None))
        await asyncio.sleep(0.05)  # the client is now waiting on the socket's descriptor
        session.send(kernel, "execute_reply", {"status": "ok"}, parent=parent,
                     ident=identities)
        time.sleep(1.0)  # the loop is busy: ZeroMQ's I/O thread queues the reply meanwhile
        channel.send(session.msg("comm_msg", {"comm_id": "w", "data": {}}))  # widget sync
        try:
            return (await asyncio.wait_for(waiter, HANG_S))["msg_type"]
        except asyncio.TimeoutError:
            return None
    finally:
        channel.close()
        kernel.close(linger=0)
        actx.term()


def test_a_reply_queued_before_a_send_is_read():
    assert asyncio.run(_reply_then_send(ShellChannel)) == "execute_reply"


def test_the_plain_channel_sleeps_through_it():
    """The control: jupyter_client's own channel waits out its timeout. If this starts to
    fail, jupyter_client fixed the race upstream and autograder/kernels.py can go. (Two
    tries: on a badly overloaded machine the reply could reach the socket only after the
    send, and then there is no race to lose.)"""
    assert any(asyncio.run(_reply_then_send(AsyncZMQSocketChannel)) is None for _ in range(2))


def test_the_manager_hands_out_the_steady_client():
    km = KernelManager()
    assert isinstance(km.client(), KernelClient)
    assert KernelClient.shell_channel_class.default_value is ShellChannel


@pytest.mark.parametrize("config", ["nbgrader_config.py", "etc/jupyter/learner/nbgrader_config.py"])
def test_nbgrader_executes_with_it(config):
    """autograde and Validate (nbgrader's Execute, i.e. nbclient) get the same client."""
    from nbgrader.preprocessors import Execute
    from traitlets.config import Config

    from autograder.course import ROOT

    c = Config()
    namespace = {"get_config": lambda: c, "c": c, "__file__": str(ROOT / config)}
    exec(compile((ROOT / config).read_text(), config, "exec"), namespace)
    execute = Execute(config=c)
    km = execute.kernel_manager_class(kernel_name="python3", config=execute.config)  # as nbclient
    assert isinstance(km.client(), KernelClient)

#!/usr/bin/env python
"""A Python Faust (faust-streaming) app for faust-rs's RPC interop test
(tests/faust_interop.rs), shaped as Faust's examples/advanced/rpc.py.

``mul`` reads RPC_PY_MUL and answers each ask with the value times 100 (a yield), as
rpc.py's ``mul`` does, printing what it was asked. A task then asks a faust-rs agent
reading RPC_RS_AGENT twice: with Faust's default reply headers and with the request
wrapped in Faust's ``ReqRepRequest`` record (``use_reply_headers=False``), and prints
each reply. Settings: faust_test_app's, with ``reply_create_topic=True`` as rpc.py
and the reply topic named by RPC_PY_REPLY_TO (tansu 0.6.0 does not create the topics
Faust declares, so the test creates it first).
"""
import os

import faust
from faust.agents import Agent

import faust_test_app

# stream_wait_empty=False: Faust's reply consumer never acknowledges the replies it
# reads, so a worker that waited for its streams to empty would hang at shutdown
# ("wait_empty: Waiting for tasks ... py-replies").
app = faust_test_app.app(
    reply_create_topic=True,
    reply_to=os.environ["RPC_PY_REPLY_TO"],
    stream_wait_empty=False,
)


@app.agent(app.topic(os.environ["RPC_PY_MUL"], value_type=float))
async def mul(stream):
    async for value in stream:
        print(f"PY MUL ASKED: {value!r}", flush=True)
        yield value * 100.0


async def _served_elsewhere(stream):  # pragma: no cover - never started here
    async for _ in stream:
        pass


# An agent object for a topic another app serves: asked, never run by this worker.
rust_agent = Agent(_served_elsewhere, name="rust_agent", app=app,
                   channel=app.topic(os.environ["RPC_RS_AGENT"]))
rust_agent_wrapped = Agent(_served_elsewhere, name="rust_agent_wrapped", app=app,
                           channel=app.topic(os.environ["RPC_RS_AGENT"]),
                           use_reply_headers=False)


@app.task
async def ask_rust() -> None:
    by_headers = await rust_agent.ask(value=2.5)
    print(f"PY GOT BY HEADERS: {by_headers!r}", flush=True)
    wrapped = await rust_agent_wrapped.ask(value=3.5)
    print(f"PY GOT WRAPPED: {wrapped!r}", flush=True)


if __name__ == "__main__":
    app.main()

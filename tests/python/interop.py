#!/usr/bin/env python
"""A Python Faust (faust-streaming) app for faust-rs's interop test (tests/faust_interop.rs).

Its agent reads what a faust-rs agent sends to INTEROP_TO_PYTHON untyped, so Faust picks
the Record class by the namespace faust-rs writes in ``__faust``. For each greeting it
answers to INTEROP_FROM_PYTHON with the same key, the name upper-cased and ``n + 1``, as
Faust sends a Record. Settings: faust_test_app's.
"""
import os

import faust

import faust_test_app

app = faust_test_app.app()


class Greeting(faust.Record, namespace="interop.Greeting"):
    name: str
    n: int


to_python = app.topic(os.environ["INTEROP_TO_PYTHON"])
from_python = app.topic(
    os.environ["INTEROP_FROM_PYTHON"], key_type=str, value_type=Greeting
)


@app.agent(to_python)
async def answer(greetings):
    async for key, greeting in greetings.items():
        if not isinstance(greeting, Greeting):
            print(f"INTEROP: not a Greeting: {greeting!r}", flush=True)
            continue
        name = key.decode() if isinstance(key, bytes) else key
        await from_python.send(
            key=name, value=Greeting(name=greeting.name.upper(), n=greeting.n + 1)
        )


if __name__ == "__main__":
    app.main()

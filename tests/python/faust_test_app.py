"""The settings the interop tests' Python Faust apps share: the app id, broker and
datadir from the environment (INTEROP_APP, INTEROP_BROKER, INTEROP_DATADIR), four
partitions, an in-memory store, no web server, quick commits."""
import os

import faust


def app(**settings) -> faust.App:
    return faust.App(
        os.environ["INTEROP_APP"],
        broker=f"kafka://{os.environ['INTEROP_BROKER']}",
        store="memory://",
        topic_partitions=4,
        web_enabled=False,
        worker_redirect_stdouts=False,
        broker_commit_interval=0.1,
        # tansu numbers the first generation 0 and aiokafka sends no LeaveGroup then:
        # keep a stopped worker's membership short.
        broker_session_timeout=10,
        autodiscover=False,
        topic_disable_leader=True,
        datadir=os.environ["INTEROP_DATADIR"],
        **settings,
    )

# This runs under Python 2.7: its u'' literals, io.open and version test stay.
# ruff: noqa: UP010, UP020, UP025, UP031, UP036
"""Writes redis-queue-1-backlog.out: the queue fact as the check script prints it with a backlog.

Run with Python 2.7 (PYENV_VERSION=2.7.18 python2 make_backlog.py), as Sentry 9.1.2's web
processes are: the task messages are pickled by cPickle with protocol 2, in the envelope
kombu 3.0's Redis transport pushes (JSON, the body base64). The host facts and INFO are
redis-queue-1-celery-keys.out's, captured on the lab; only the queue lines are new.
"""

from __future__ import print_function

import base64
import io
import json
import sys

if sys.version_info[0] == 2:
    import cPickle as pickle  # Python 2's own pickler, as Sentry 9's web processes use
else:
    import pickle

HERE = sys.path[0]
#: '@@ end' of the captured output: the redis-queue host's clock when the round ended.
HOST_NOW = 1795755391.678142536


def task(name, queue, task_id, event_id, age):
    """One queued Sentry task as kombu stores it; `age` seconds since the event's acceptance."""
    body = {"task": name, "id": task_id, "args": [], "retries": 0, "eta": None,
            "expires": None, "utc": True, "callbacks": None, "errbacks": None,
            "timelimit": (None, None), "taskset": None, "chord": None,
            "kwargs": {"cache_key": u"e:%s:1" % event_id, "start_time": HOST_NOW - age,
                       "event_id": event_id}}
    return json.dumps({
        "body": base64.b64encode(pickle.dumps(body, 2)).decode("ascii"),
        "headers": {}, "content-type": "application/x-python-serialize",
        "content-encoding": "binary",
        "properties": {"body_encoding": "base64", "delivery_mode": 2,
                       "delivery_tag": "2c2f4a8e-94a7-4a2b-9a8a-0b6c4d3e2f10",
                       "delivery_info": {"priority": 0, "routing_key": queue,
                                         "exchange": queue}}})


def main():
    with io.open(HERE + "/redis-queue-1-celery-keys.out", encoding="utf-8") as f:
        captured = f.read()
    head = captured[:captured.index(u"@llen default")]
    end = captured[captured.index(u"@@rc 0\n@@ end"):]
    pre = task("sentry.tasks.store.preprocess_event", "events.preprocess_event",
               "6f1f3c1e-5d0c-4a51-9c6b-2f1e0f7d9a01", u"4f2d8b0c6a9e4e1f9b7c3d2a1e0f9c8b",
               754.5)
    save = task("sentry.tasks.store.save_event", "events.save_event",
                "0b9d7e62-1c3a-4f5e-8d2b-7a6c5e4d3f21", u"9a8b7c6d5e4f40312f1e0d9c8b7a6f5e",
                12.25)
    # Cut where redis-cli's output would stop: not a whole message, so its age is unknown.
    cut = pre[:80]
    lines = [u"@llen default", u"0",
             u"@llen events.preprocess_event", u"3", u"@oldest events.preprocess_event", pre,
             u"",
             u"@llen events.process_event", u"1", u"@oldest events.process_event", cut,
             u"@llen events.save_event", u"2", u"@oldest events.save_event", save, u"",
             u"@llen events.reprocessing.preprocess_event", u"0",
             # LLEN saw one, a worker took it before LINDEX: redis-cli printed an empty line.
             u"@llen events.reprocessing.process_event", u"1",
             u"@oldest events.reprocessing.process_event", u"", u""]
    with io.open(HERE + "/redis-queue-1-backlog.out", "w", encoding="utf-8") as f:
        f.write(head + u"\n".join(lines) + u"\n" + end)


if __name__ == "__main__":
    main()

"""Where Sentry 9.1.2's accepted events wait for a worker, and since when. Pure.

A web process stores each accepted event's payload in Sentry's default cache (SENTRY_CACHE)
under `e:<event_id>:<project>` for PAYLOAD_TTL_S seconds, then enqueues a Celery task that
carries only that key and `start_time`, when the event was accepted (sentry/coreapi.py,
insert_data_to_database). A worker reads the payload back by key; a payload evicted or
expired before then is an accepted event lost (`preprocess.failed.empty` in its log).

Celery 3.1 on kombu 3.0's Redis transport keeps a queue as a list: LPUSH in, BRPOP out, so
the oldest message is at index -1. Each element is a JSON envelope whose base64 `body` is
the task message pickled by Python 2.7 (protocol 2). It is never unpickled here: unpickling
runs whatever the bytes say, and a status check must not run code taken from a queue.
pickletools.genops only reads the opcodes.
"""

from __future__ import annotations

import base64
import json
import pickletools
from typing import Any

#: The Redis roles that hold event payloads (SENTRY_CACHE). Every check that protects
#: accepted events (no eviction, memory headroom) follows this set, not a role name.
PAYLOAD_ROLES: frozenset[str] = frozenset({"redis-queue"})

#: How long a payload lives in SENTRY_CACHE (coreapi.py: cache_timeout = 3600); a task still
#: queued after that finds nothing, even on a Redis that never evicts.
PAYLOAD_TTL_S = 3600

#: The one eviction policy under which Redis never drops a payload to make room.
PAYLOAD_POLICY = "noeviction"

#: The kwarg of Sentry's event tasks that says when the event was accepted (unix seconds).
START_KEY = "start_time"

PICKLE = "application/x-python-serialize"

#: Opcodes that push a text or bytes object (Python 2 str is STRING/BINSTRING/SHORT_BINSTRING).
_TEXT = frozenset({"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE",
                   "SHORT_BINUNICODE", "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES",
                   "BINBYTES8"})
_NUMBER = frozenset({"BINFLOAT", "FLOAT", "INT", "BININT", "BININT1", "BININT2", "LONG",
                     "LONG1", "LONG4"})
_PUT = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_GET = frozenset({"GET", "BINGET", "LONG_BINGET"})
_NOTHING = object()  # what an opcode pushed, when it is not a text we could compare


def holds_payloads(role: str) -> bool:
    """True if `role` keeps accepted events' payloads (so it must never evict one)."""
    return role in PAYLOAD_ROLES


def pickled_number(data: bytes, key: str) -> float | None:
    """The number pickled right after the text `key` (a dict's value for that key), or None.

    Handles Python 2 pickles (keys as SHORT_BINSTRING/BINSTRING, memoized with BINPUT) and
    Python 3 ones (SHORT_BINUNICODE, MEMOIZE, FRAME); a key pickled twice is a memo GET the
    second time. Raises ValueError on bytes that are not a pickle.
    """
    memo: dict[int, Any] = {}
    last: Any = _NOTHING
    after_key = False
    for op, arg, _ in pickletools.genops(data):
        name = op.name
        if name in _PUT:
            memo[arg] = last
            continue
        if name == "MEMOIZE":
            memo[len(memo)] = last
            continue
        if name == "FRAME":
            continue
        if after_key and name in _NUMBER and not isinstance(arg, bool):
            return float(arg)
        if name in _TEXT:
            last = arg.decode("latin-1") if isinstance(arg, bytes) else arg
        elif name in _GET:
            last = memo.get(arg, _NOTHING)
        else:
            last = _NOTHING
        # A key whose value is not a number (None, a string) is not the one: keep looking.
        after_key = last == key
    return None


def _json_number(doc: Any, key: str) -> float | None:
    # Celery's message protocol 1 is a dict with 'kwargs'; protocol 2 a list [args, kwargs,
    # embed].
    kwargs = doc.get("kwargs") if isinstance(doc, dict) else \
        doc[1] if isinstance(doc, list) and len(doc) > 1 else None
    value = kwargs.get(key) if isinstance(kwargs, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def enqueued_at(element: str) -> float | None:
    """When the event of a queued Celery task was accepted (its kwargs start_time), or None.

    `element` is one item of a kombu Redis queue list, as redis-cli prints it. None for
    anything that is not such a message or has no numeric start_time: this reads whatever
    is in a queue and must never raise.
    """
    try:
        envelope = json.loads(element)
        body = envelope["body"]
        props = envelope.get("properties") or {}
        raw = base64.b64decode(body, validate=True) if props.get("body_encoding") == "base64" \
            else body.encode("latin-1")
        if envelope.get("content-type") == PICKLE:
            return pickled_number(raw, START_KEY)
        if envelope.get("content-type") == "application/json":
            return _json_number(json.loads(raw), START_KEY)
        return None
    except Exception:  # a malformed message of any kind is 'unknown', never a crash
        return None

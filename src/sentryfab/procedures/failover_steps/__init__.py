"""The steps of a switchover, failover, rejoin or degrade, each an action on one host.

context    what the steps of one run share: runner, plan, topology found, undo stack
postgres   PostgreSQL's steps: stop, fence, promote, degrade, rewind, rejoin
pgbouncer  PgBouncer's steps: stage and commit pgbouncer.ini, PAUSE, RESUME, test write

The plans are in plans/failover.py (pure); procedures/failover.py runs them, dispatching
each plan Action to its step here; the commands and their parsers are in topology/.
"""

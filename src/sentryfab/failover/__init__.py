"""The database cluster as it is (discovered, never assumed) and how its primary moves.

model          what was found: nodes, PgBouncers, lag, problems (pure)
parse          remote output -> model fields (pure)
commands       the remote commands that find it out and act on it (pure builders)
discover       ask every db and PgBouncer host at once: Topology; cluster_state for templates
context        what the steps of one run share (runner, plan, undo stack)
pg_steps       PostgreSQL's steps: stop, fence, promote, degrade, rewind, rejoin
bouncer_steps  PgBouncer's steps: stage and commit pgbouncer.ini, PAUSE, RESUME, test write

The plans are in plans/failover.py (pure); procedures/failover.py runs them.
"""

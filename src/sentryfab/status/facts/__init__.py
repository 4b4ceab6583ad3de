"""The facts a status round reads, one module per family, each fact's command beside its parser.

pyinfra's fact pattern: a fact class has `command(...)`, the shell text a host runs for it,
and `parse(lines)`, what that output means (pyinfra calls it process()); `name` is the mark
the check script prints before the output ('@@ name'). script.py puts a host's facts into its
one check script and cuts the answer back into each fact's lines. Pure: text in, text out.

    host.py       loadavg, nproc, meminfo, file-nr, df: the machine itself (every host)
    docker.py     our containers, running or not, with restart counts and labels
    web.py        /_health/ of every web process (and the HTTP probe nginx's facts share)
    nginx.py      stub_status, the deployed config's upstreams probed, when it last changed
    redis.py      INFO; on the queue, each queue's length, its oldest task, heartbeats
    db.py         PostgreSQL's view of itself, its standbys and its slots
    pgbouncer.py  SHOW POOLS / STATS / DATABASES on the admin console
    ingestion.py  the last minute of nginx's and the workers' logs, counted on the host
    cleanup.py    the retention cleanup's schedule and last runs (on the cron host)
    lock.py       who holds the deploy lock (on the lock host)
"""

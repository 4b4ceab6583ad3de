"""The database cluster's model, and the commands that find it out and act on it. Pure: no
I/O (procedures/discover.py asks the hosts; procedures/failover_steps/ runs the commands).

model        what was found: nodes, PgBouncers, lag, problems
values       PostgreSQL's text forms <-> values (LSNs, integers, booleans)
state        where the primary is, from a Topology: the ClusterState templates render with
db_facts     what discovery asks a db host, each beside its parser: DbProbe, ControlData,
             WalEnd (a fact: `command()` builds the question, `parse()` reads the answer)
db_commands  what the steps run on a db host: psql, polls, promotion (Promote, with its
             parser), stopping and starting the container (ContainerHealth, with its parser)
pgbouncer    PgBouncer's admin console, ShowDatabases and WriteProbe (each with its parser)

The plans are in plans/failover.py (pure); procedures/failover.py runs them.
"""

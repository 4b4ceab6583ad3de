"""The lab's Sentry project: an owner, and the DSN the load generator and raven send with.

The first `sentry upgrade` makes Sentry's internal organization and project (id 1) with one
DSN key. Sentry 9 also wants a user to own the organization: without one, each first event
of a group logs an IndexError in `record_first_event`. `ensure_owner` makes a superuser with
no usable password (nobody logs into the lab's Sentry) the way an operator would, with
Sentry's own `createuser`; `project_key` reads the key from PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..configs.context import settings
from ..containers.spec import container_name
from ..errors import RemoteError
from ..inventory import Host, Inventory
from ..remote import Runner, Session
from ..shell import join
from .load import DB_CONTAINER, PROJECT_ID, psql_command

OWNER_EMAIL = "owner@lab.sentryfab.invalid"
SENTRY_UID = "999"  # the image's `sentry` user, owner of the rendered configs

KEY_SQL = ("SELECT public_key FROM sentry_projectkey WHERE project_id = {project} "
           "AND status = 0 ORDER BY id LIMIT 1;\n")
OWNERS_SQL = "SELECT count(*) FROM auth_user WHERE is_superuser;\n"


@dataclass(frozen=True)
class Dsn:
    """A project's DSN, as a client is configured with it."""

    key: str
    host: str
    port: int
    project_id: int

    def __str__(self) -> str:
        netloc = self.host if self.port == 80 else f"{self.host}:{self.port}"
        return f"http://{self.key}@{netloc}/{self.project_id}"

    @property
    def store_url(self) -> str:
        """Where events are POSTed."""
        netloc = self.host if self.port == 80 else f"{self.host}:{self.port}"
        return f"http://{netloc}/api/{self.project_id}/store/"


def createuser_command(email: str = OWNER_EMAIL) -> str:
    """Sentry's createuser in the first web container, as the sentry user."""
    return join(["docker", "exec", "--user", SENTRY_UID, container_name("web", 1), "sentry",
                 "--config", "/etc/sentryfab/web", "createuser", "--superuser", "--no-input",
                 "--no-password", "--email", email])


def _sql(session: Session, sql: str) -> str:
    out = session.run(psql_command(DB_CONTAINER), stdin=sql.encode(), timeout=60)
    if not out.ok:
        why = out.error or out.stderr.strip() or f"exit code {out.exit_code}"
        raise RemoteError(f"{session.host.name}: psql in {DB_CONTAINER} failed: {why}")
    return out.stdout.strip()


def project_key(runner: Runner, db_host: Host, project_id: int = PROJECT_ID) -> str:
    """The active DSN public key of a project, from PostgreSQL on the primary."""
    key = _sql(runner.session(db_host), KEY_SQL.format(project=int(project_id)))
    if len(key) != 32:
        raise RemoteError(f"{db_host.name}: project {project_id} has no active DSN key "
                          f"(got {key[:60]!r}); has `fab deploy` run `sentry upgrade`?")
    return key


def ensure_owner(runner: Runner, inv: Inventory, db_host: Host) -> bool:
    """Make the organization's owner unless a superuser exists; True if one was made."""
    if int(_sql(runner.session(db_host), OWNERS_SQL) or 0) > 0:
        return False
    web = inv.with_role("web")[0]
    out = runner.session(web).run(createuser_command(), timeout=180)
    if not out.ok:
        raise RemoteError(f"{web.name}: sentry createuser failed: "
                          f"{(out.stderr or out.stdout).strip()[-500:]}")
    return True


def dsn(runner: Runner, inv: Inventory, db_host: Host, project_id: int = PROJECT_ID) -> Dsn:
    """The DSN clients use: the project's key, through the first nginx host."""
    lb = inv.with_role("nginx")[0]
    port = int(settings(inv, "nginx", lb).get("port", 80))
    return Dsn(project_key(runner, db_host, project_id), lb.address, port, project_id)

"""The runbook: Markdown written from the inventory and the live cluster. Pure.

Same inputs, same bytes (no timestamps, sorted everything), so the file can be committed
and a diff shows what changed in the cluster. Never a secret value: only where they come
from. What only hosts or files know (the primary, audit lines, decision records) is read
by procedures/docs.py and passed in; each section of the page is one function below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .auditlog import REMOTE_LOG
from .configs.catalog import CONFIG_ROOT, files_for
from .configs.context import settings, web_ports
from .containers.spec import DATA_ROOT, container_name
from .folding import fold_names
from .inventory import Inventory
from .plans.capacity import GB, CapacityReport
from .roles import ROLES
from .secrets import ENV_PREFIX, REQUIRED


@dataclass
class Live:
    """What only the running cluster knows (empty with --offline)."""

    primary: str | None = None
    replicas: list[str] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)
    source: str = "inventory (offline)"


def _port(inv: Inventory, role: str) -> str:
    s = settings(inv, role)
    if role == "web":
        return f"{s['base_port']}-{int(s['base_port']) + int(s['processes']) - 1}"
    return str(s.get("port", "-"))


def _mermaid(inv: Inventory) -> list[str]:
    present = {r for r in ROLES if inv.with_role(r)}
    edges = [("nginx", "web", "HTTP"), ("web", "redis-queue", "events"),
             ("web", "redis-cache", "cache"), ("web", "pgbouncer", "SQL"),
             ("worker", "redis-queue", "takes events"), ("worker", "pgbouncer", "SQL"),
             ("cron", "pgbouncer", "SQL"), ("pgbouncer", "db", "SQL to the primary"),
             ("worker", "redis-cache", "cache")]
    out = ["```mermaid", "flowchart LR"]
    for r in ROLES:
        if r in present:
            n = len(inv.with_role(r))
            out.append(f'    {r.replace("-", "_")}["{r} x{n}"]')
    for a, b, label in edges:
        if a in present and b in present:
            out.append(f"    {a.replace('-', '_')} -->|{label}| {b.replace('-', '_')}")
    if len(inv.with_role("db")) > 1:
        out.append("    db -->|streaming replication| db")
    out.append("```")
    return out


def _shown(path: Path | None, inv: Inventory) -> str | None:
    """A path as people write it: relative to the inventory's folder, or under ~."""
    if path is None:
        return None
    base = inv.path.parent.resolve()
    try:
        return str(path.resolve().relative_to(base))
    except ValueError:
        home = Path.home()
        return "~/" + str(path.relative_to(home)) if path.is_relative_to(home) else str(path)


def _running_sentry(inv: Inventory) -> list[str]:
    """Retention, shared files, mail, limits and the endpoints clients may send to."""
    from .configs.context import retention, settings, site
    from .containers import cleanup
    from .status.ingestion import ENDPOINTS

    keep, s = retention(inv), site(inv)
    fs, mail = s["filestore"], s["mail"]
    where = (f"`{fs['path']}` on every Sentry host, mounted at `/var/lib/sentry/files`"
             + (" (shared storage: one NFS share everywhere)" if fs["shared"]
                else " (this host's own disk)") if fs["backend"] == "filesystem"
             else f"{fs['backend']} bucket `{fs['options'].get('bucket_name', '?')}`")
    lines = [
        "", "## Running Sentry", "",
        f"- Retention: `sentry cleanup --days {keep['days']}` daily at {keep['at']} UTC in "
        f"`{cleanup.CONTAINER}` on the cron host; runs recorded in `{cleanup.RUNS_FILE}`, the "
        f"last one's output in `{cleanup.LAST_LOG}`; `fab cron.cleanup` runs it now; "
        "`fab status` warns after a missed day and is critical after two failed runs.",
        f"- Files (release files, source maps, debug files): {where}.",
        "- Mail: " + (f"`{mail['host']}:{mail['port']}` from `{mail['from']}`"
                      + (" (password: secret `mail_password`)" if mail["username"] else "")
                      if mail["host"] else "not configured (Sentry sends no mail)") + ".",
        f"- Address users and SDKs use: `{s['url'] or '(sentry: url not set)'}`; largest "
        f"request (uploads): {settings(inv, 'web')['max_body_mb']} MiB in nginx and uWSGI.",
        "- Ingestion endpoints clients may use (Sentry 9.1.2): "
        + ", ".join(f"`{e.shown}`" for e in ENDPOINTS if e.served)
        + ". Not there (sentry-sdk >= 0.17/2.x envelopes and newer): "
        + ", ".join(f"`{e.shown}`" for e in ENDPOINTS if not e.served)
        + "; `fab status` names clients sending to those.",
    ]
    return lines


def render(inv: Inventory, live: Live, capacity: CapacityReport | None,
           decisions: list[tuple[str, str]], secrets_file: str | None) -> str:
    """The whole runbook as Markdown: its sections in order, one line each."""
    sections = (_title(inv, live), _architecture(inv), _hosts(inv), _topology(live),
                _access(inv), _layout(inv), _running_sentry(inv), _secrets(secrets_file),
                _restore(inv, secrets_file), _contacts(inv), _capacity(capacity),
                _recent_changes(live),
                _decisions(decisions), _everyday())
    return "\n".join(line for section in sections for line in section)


def _title(inv: Inventory, live: Live) -> list[str]:
    return [
        f"# Runbook: {inv.cluster}",
        "",
        f"Generated by `fab docs` from `{inv.path.name}` and the live cluster ({live.source}).",
        "Do not edit by hand: change the inventory or `docs/decisions/`, then run `fab docs`.",
        "",
    ]


def _architecture(inv: Inventory) -> list[str]:
    """How an event flows, the diagram, and one line per role."""
    lines = [
        "## Architecture",
        "",
        "Events arrive at nginx, which balances over every web process of every web host; a",
        "web process pushes each event to the queue Redis and answers; workers take events off",
        "the queue and store them in PostgreSQL through PgBouncer; cron runs periodic jobs",
        "(exactly one in the cluster). The cache Redis holds Sentry's caches (LRU); the queue",
        "Redis never evicts and persists. PostgreSQL streams to its replica(s).",
        "",
        *_mermaid(inv),
        "",
        "| role | hosts | port | image |",
        "| --- | --- | --- | --- |",
    ]
    for role in ROLES:
        hosts = inv.with_role(role)
        if hosts:
            s = settings(inv, role)
            names = fold_names([h.name for h in hosts])
            lines.append(f"| {role} | {names} | {_port(inv, role)} | "
                         f"{s.get('image', '-')}:{s.get('tag', '-')} |")
    return lines


def _hosts(inv: Inventory) -> list[str]:
    """Every host: address, roles, the containers it runs."""
    lines = ["", "### Hosts", "", "| host | address | roles | containers |",
             "| --- | --- | --- | --- |"]
    for h in inv.hosts:
        containers = []
        for role in h.roles:
            n = len(web_ports(inv, h)) if role == "web" else \
                int(settings(inv, role, h).get("processes", 1)) if role == "worker" else 1
            containers.append(f"{container_name(role, 1)}" + (f"..{n}" if n > 1 else ""))
        lines.append(f"| {h.name} | {h.address} | {', '.join(h.roles) or '-'} | "
                     f"{', '.join(containers) or '-'} |")
    return lines


def _topology(live: Live) -> list[str]:
    return [
        "", "## Current database topology", "",
        f"- primary: **{live.primary or 'unknown'}**",
        f"- replicas: {', '.join(live.replicas) or 'none'}",
        "", "`fab db.status` shows it live (lag, timelines, where PgBouncer points).",
    ]


def _access(inv: Inventory) -> list[str]:
    """SSH user, key, bastion and host keys."""
    ssh = inv.ssh
    return [
        "", "## Reaching the hosts", "",
        f"- SSH user: `{ssh.user or 'your own'}`, port {ssh.port or 22}, key "
        f"`{_shown(ssh.key_file, inv) or 'your default'}`",
        f"- bastion: `{ssh.jump}`" if ssh.jump else "- no bastion: hosts are reached directly",
        "- root: every command runs through `sudo -n` (`become: sudo`); the SSH user needs "
        "sudo without a password" if ssh.become else
        "- root: the SSH user itself (no `become`): it must be root or may use Docker and "
        "sentryfab's folders",
        f"- host keys: `{_shown(ssh.known_hosts, inv) or '~/.ssh/known_hosts'}` (sentryfab "
        "refuses unknown "
        "and changed keys; `--accept-new` records new ones)",
        "- `~/.ssh/config` entries (User, Port, IdentityFile, ProxyJump) apply as with ssh.",
    ]


def _layout(inv: Inventory) -> list[str]:
    """Where configs, data, the audit log and logs are on a host; each role's files."""
    lines = [
        "", "## Where things live on the hosts", "",
        "| what | where |", "| --- | --- |",
        f"| configs | `{CONFIG_ROOT}/<role>/` (previous versions in `.history/`) |",
        f"| data | `{DATA_ROOT}/<role>/` |",
        f"| audit log | `{REMOTE_LOG}` |",
        "| logs | `docker logs sentry-<role>-<n>` or `fab logs HOST --role R` |",
        "",
        "| role | config files |", "| --- | --- |",
    ]
    present = inv.roles_present()
    for role in ROLES:
        if inv.with_role(role):
            lines.append(f"| {role} | " + ", ".join(f"`{f.name}`" + (" (secret, 0600)"
                                                                   if f.secret else "")
                                                   for f in files_for(role, present)) + " |")
    return lines


def _secrets(secrets_file: str | None) -> list[str]:
    """Where secrets are read from, and each one's variable (never a value)."""
    lines = ["", "## Secrets", "",
             f"Never in the inventory or git. Read from `{secrets_file or '(not set)'}` "
             "(must be mode 0600) and from environment variables, which win:", "",
             "| secret | variable | what for |", "| --- | --- | --- |"]
    for name, what in sorted(REQUIRED.items()):
        lines.append(f"| {name} | `{ENV_PREFIX}{name.upper()}` | {what} |")
    lines += ["", "`fab secrets.generate` writes a fresh file for a new cluster.", ""]
    return lines


def _restore(inv: Inventory, secrets_file: str | None) -> list[str]:
    """The restore page: where the repository is, where its key comes from, and the exact
    commands for each disaster (decision record 0007)."""
    from .configs import backup as b

    repo = b.backup_host(inv)
    if repo is None:
        return ["", "## Backups and restore", "",
                "No host has the role `backup`: there are **no backups**. A replica does not "
                "protect against a bad migration, an `UPDATE` without `WHERE`, or both db "
                "hosts lost at once. Add a backup host (decision record 0007).", ""]
    return ["", "## Backups and restore", "", *_repository_lines(inv, repo, secrets_file),
            "", *_disasters(inv, repo)]


def _repository_lines(inv: Inventory, repo: Any, secrets_file: str | None) -> list[str]:
    """Where the repository is, its key's source, what is kept and when it is taken."""
    from .configs import backup as b

    s = settings(inv, "backup", repo)
    key = f"`backup_cipher_pass` in `{secrets_file or '(not set)'}` (or " \
          f"`{ENV_PREFIX}BACKUP_CIPHER_PASS`)"
    return [
        f"- Repository: pgBackRest on **{repo.name}** ({repo.address}), `{b.REPO_PATH}`, "
        f"stanza `{b.STANZA}`, encrypted (aes-256-cbc) with the key {key}; TLS "
        f"keys derived from `backup_tls_seed`. Lose both and the backups cannot be read: "
        "keep a copy of the secrets file off this cluster.",
        f"- WAL archived continuously from the primary, at the latest every "
        f"{int(s['archive_timeout'])} s (the most a restore can lose). Kept: "
        f"{int(s['retention_full'])} full backups, with up to {int(s['retention_diff'])} "
        f"differentials; a full on weekday {int(s['full_on'])} (0 Monday), a differential "
        f"the other days at {s['backup_at']} UTC, a restore drill daily at {s['drill_at']} UTC "
        f"(`sentry-backup-2` on {repo.name}). `fab status` warns after 26 h without a good "
        "backup, is critical after 50 h, when a drill failed, or when WAL waits 5 min for "
        "the archive.",
        "- What exists and the oldest point a restore can reach: `fab db.backups`. Every "
        "command below takes the deploy lock, writes the audit log, shows its plan and asks "
        "first (`--dry-run` shows the plan only)."]


def _disasters(inv: Inventory, repo: Any) -> list[str]:
    """The exact commands for each disaster, with this cluster's host names."""
    dbs = [h.name for h in inv.with_role("db")]
    first = dbs[0] if dbs else "db-1"
    rest = ", ".join(dbs[1:]) or "the other db hosts"
    return [
        "| disaster | what to run |", "| --- | --- |",
        "| one db host lost (the other still a primary) | `fab db.failover` if it was the "
        "primary; then, once it is back or replaced, `fab deploy.db` (a new, empty host is "
        "cloned) or `fab db.rejoin --node HOST` |",
        f"| both db hosts lost | `fab db.restore --latest` (restores into {first}, replays "
        f"every archived WAL segment, starts it as the primary); then `fab deploy.db` (clones "
        f"{rest}); then `fab db.backup --type full` |",
        "| bad data at time T (a migration, a DELETE) | first look: `fab db.restore --time T "
        f"--into {repo.name}` (a scratch copy, the cluster untouched: `docker exec -it --user "
        "postgres sentry-restore-1 psql -d sentry` there); to put the cluster back to T: "
        "`fab db.restore --time T`, then `fab db.rejoin --node` each other db host |",
        "| the repository host lost | a new host with the role `backup`, `fab deploy.backup`, "
        "`fab db.backup --type full` (WAL since the last backup is on no other machine) |",
        "",
        "Prove the backups restore: `fab db.drill` (restores the latest into a scratch "
        f"container on {repo.name}, runs pg_amcheck, compares the events per project with "
        "the primary).", ""]


def _contacts(inv: Inventory) -> list[str]:
    """Owners, dashboards and alert targets, as the inventory lists them."""
    lines: list[str] = []
    for key, title in (("owners", "Owners"), ("dashboards", "Dashboards"),
                       ("alerts", "Alert targets")):
        lines += [f"## {title}", ""]
        value = inv.extra.get(key)
        if isinstance(value, dict):
            # By name as written: `1: ops` beside `db: dba` would not compare.
            lines += [f"- {k}: {v}" for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))]
        elif isinstance(value, list):
            lines += [f"- {v}" for v in value]
        else:
            lines.append(f"- none listed (add `{key}:` to the inventory)")
        lines.append("")
    return lines


def _capacity(capacity: CapacityReport | None) -> list[str]:
    """Each tier's limit, plan and use, and what runs out first (nothing without a report)."""
    if capacity is None:
        return []
    lines = ["## Capacity", "", "| tier | component | limit | planned | used |",
             "| --- | --- | --- | --- | --- |"]
    for x in sorted(capacity.lines, key=lambda x: (x.tier, x.component)):
        fmt = (lambda v: f"{v / GB:.1f} GiB") if x.unit == "bytes" else (
            lambda v: f"{v:,.0f}")
        lines.append(f"| {x.tier} | {x.component}{' (what if)' if x.what_if else ''} | "
                     f"{fmt(x.limit)} | {fmt(x.planned)} | {x.used_pct:.0f}% |")
    first = capacity.first_to_run_out
    if first:
        lines += ["", f"First to run out: **{first.component}** ({first.used_pct:.0f}%)."]
    lines.append("")
    return lines


def _recent_changes(live: Live) -> list[str]:
    """The audit lines read from the hosts (none offline)."""
    lines = ["## Recent changes (audit log)", ""]
    if live.audit:
        lines += ["| when | who | what | version | result |", "| --- | --- | --- | --- | --- |"]
        for a in live.audit:
            lines.append(f"| {a.get('at', '')} | {str(a.get('who', '')).split(' (')[0]} | "
                         f"{a.get('action', '')} | {a.get('version', '')} | "
                         f"{a.get('result', '')} |")
    else:
        lines.append("- not read (offline)")
    return lines


def _decisions(decisions: list[tuple[str, str]]) -> list[str]:
    """The decision records (name, text), their headings moved under this page's."""
    lines = ["", "## Decisions", ""]
    for name, text in decisions:
        lines += [f"<!-- docs/decisions/{name} -->", text.strip().replace("\n# ", "\n### ")
                  .replace("# ", "### ", 1).replace("\n## ", "\n#### "), ""]
    return lines


def _everyday() -> list[str]:
    return ["## Everyday commands", "",
            "| need | command |", "| --- | --- |",
            "| what is wrong, where | `fab status` |",
            "| run something everywhere | `fab run --roles=web \"df -h /\"` |",
            "| deploy a new Sentry version | `fab deploy.web --tag T` (then worker, cron) |",
            "| undo it | `fab deploy.rollback --roles=web` |",
            "| more web processes | `fab web.scale --processes N` |",
            "| will it fit | `fab capacity` |",
            "| who deployed what | `fab audit` |", ""]

"""Deploys: configs pushed and containers replaced batch by batch, each batch health-gated.

For one role: read each host's containers and config checksums, let plans/deploy.py say
which hosts are left alone, reloaded or replaced, reload those one host at a time, split
the ones to replace into batches, and for each batch push its configs, replace its
containers and wait for the health check (_health_gate, the one place it is awaited).
A batch with more failed hosts than --max-fail stops the rollout: its failed hosts go
back to the version they ran, hosts not reached yet are left untouched. Web hosts leave
nginx's rotation before their processes stop and rejoin once healthy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ..configs import commands as cfg
from ..configs.apply import config_digest, reload_command
from ..configs.catalog import ROLE_FILES, files_for, remote_path
from ..configs.context import ClusterState, settings, web_ports
from ..configs.render import Rendered, render_all, scram_sha256
from ..containers import docker, health, pgbackrest, postgres, releases
from ..containers.spec import ContainerSpec, prepare_dirs, specs_for
from ..errors import SentryfabError
from ..inventory import Host, Inventory
from ..plans.deploy import LOST, UNTOUCHED, Action, RoleFacts, State, plan_role, running_version
from ..plans.rollout import batches
from ..remote import CommandOutput, Runner, Session
from ..secrets import Secrets
from ..shell import chain, join, quiet
from . import configs as config_push
from .guard import Change

HEALTH_TIMEOUT = 90.0
KEEP_IMAGES = 3  # releases kept on each host for a rollback (a role's `keep_images`)

#: Called with (role, message) as the rollout goes, for a progress display.
Event = Callable[[str, str], None]


class DeployFailed(SentryfabError):
    """A rollout stopped; the report says which hosts run which version."""


@dataclass
class HostOutcome:
    """Where one host of a role ended: its version before and after, and what happened."""

    host: str
    before: str | None
    after: str | None
    state: State
    detail: str = ""


@dataclass
class RoleReport:
    """One role's rollout."""

    role: str
    version: str
    outcomes: list[HostOutcome] = field(default_factory=list)
    batches: int = 0
    stopped: str = ""  # why the rollout stopped early, if it did

    @property
    def ok(self) -> bool:
        """True if no host failed and the rollout was not stopped."""
        return not self.stopped and all(o.state not in LOST for o in self.outcomes)

    @property
    def changed(self) -> bool:
        """True if any host was touched."""
        return any(o.state not in UNTOUCHED for o in self.outcomes)


@dataclass(frozen=True)
class Gate:
    """A health check awaited on a host: what it checks, and how the wait ended."""

    check: health.HealthCheck
    out: CommandOutput

    @property
    def ok(self) -> bool:
        """True if the containers became healthy in time."""
        return self.out.ok


@dataclass
class Deployer:
    """Everything a rollout needs, passed once (runner, inventory, secrets, cluster state)."""

    runner: Runner
    inv: Inventory
    secrets: Secrets
    state: ClusterState
    on_event: Event = lambda role, msg: None
    health_timeout: float = HEALTH_TIMEOUT
    #: web.scale: web host -> processes it runs until its batch is rolled out. nginx lists
    #: those hosts with that count meanwhile, not with ports nothing listens on yet.
    scaling_from: dict[str, int] = field(default_factory=dict)
    #: The guarded change this rollout belongs to: told each step and each host touched,
    #: and given what to put back if Ctrl-C lands mid-batch.
    change: Change | None = None

    def _at(self, step: str, hosts: list[Host] = ()) -> None:
        if self.change is not None:
            self.change.at(step)
            self.change.touch(list(hosts))

    # -- what should run -------------------------------------------------------------------

    def render(self, hosts: list[Host], role: str, drained: frozenset[str] = frozenset()
               ) -> dict[str, list[Rendered]]:
        """The role's config files for these hosts (raises RenderError before any change)."""
        if role not in ROLE_FILES:
            return {h.name: [] for h in hosts}
        return render_all(self.inv, hosts, self.secrets, self.state, drained=drained,
                          roles=(role,))

    def wanted(self, host: Host, role: str, files: list[Rendered], version: str | None,
               count: int | None = None) -> list[ContainerSpec]:
        """The containers `role` should run on `host`, labelled with version and config hash."""
        return specs_for(self.inv, host, role, version=version,
                         config_hash=config_digest((f.file, f.content) for f in files),
                         count=count)

    # -- one role ----------------------------------------------------------------------------

    def deploy_role(self, role: str, hosts: list[Host], *, version: str | None = None,
                    batch: str | None = None, max_fail: int = 0, count: int | None = None,
                    before_rollout: Callable[[], None] | None = None) -> RoleReport:
        """Roll `role` out over `hosts`; returns the report (raises only on setup errors).

        `before_rollout` runs once if any host is about to change (web: the migrations).
        """
        rendered = self.render(hosts, role)
        target = version or str(settings(self.inv, role).get("tag", "latest"))
        report = RoleReport(role, target)
        results = self.runner.each(hosts, lambda s: self._facts(s, role, rendered[s.host.name]))
        facts = {h.name: r.value if r.ok else None for h, r in zip(hosts, results, strict=True)}
        plan = plan_role(role, facts,
                         {h.name: self.wanted(h, role, rendered[h.name], version, count)
                          for h in hosts if facts[h.name] is not None},
                         {h.name: {f.path: f.sha256 for f in rendered[h.name]} for h in hosts},
                         self.state.primary)
        for h, r, hp in zip(hosts, results, plan.hosts, strict=True):
            if hp.action is Action.UNINSPECTED:
                report.outcomes.append(_lost(h, r))
            elif hp.action is Action.UNCHANGED:
                report.outcomes.append(HostOutcome(h.name, hp.version, hp.version,
                                                   State.UNCHANGED))
        by_name = {h.name: h for h in hosts}
        reload = [by_name[n] for n in plan.reload]  # only what a reload applies differs
        todo = [by_name[n] for n in plan.replace]
        if plan.stopped:
            report.stopped = plan.stopped
            report.outcomes += [HostOutcome(h.name, None, None, State.NOT_REACHED)
                                for h in reload + todo]
            return report
        for h in reload:  # one host at a time, each health-checked
            self.on_event(role, f"{h.name}: config changed, reloading")
            self._at(f"{role}: reloading {h.name}", [h])
            [r] = self.runner.each([h], lambda s: self._reload(
                s, role, rendered[s.host.name], config_push.stamp()),
                what=f"{role}: reloading {h.name}")
            report.outcomes.append(r.value if r.ok else _lost(h, r))
        if any(o.state in LOST | {State.ROLLED_BACK} for o in report.outcomes):
            report.stopped = "a config reload failed its health check; rollout stopped"
            report.outcomes += [HostOutcome(h.name, None, None, State.NOT_REACHED)
                                for h in todo]
            return report
        groups = batches([by_name[n] for n in plan.order], batch, role)
        if groups and before_rollout is not None:
            before_rollout()
        self._run_batches(report, groups, max_fail, "batch", lambda s, when: self._replace(
            s, role, rendered[s.host.name], version, count, when))
        return report

    def rollback_role(self, role: str, hosts: list[Host], *, batch: str | None = None,
                      max_fail: int = 0) -> RoleReport:
        """Each host back to the release before its current one: image and config files."""
        report = RoleReport(role, "previous")
        self._run_batches(report, batches(hosts, batch, role), max_fail, "rollback batch",
                          lambda s, when: self._roll_back(s, role, when))
        return report

    def _roll_back(self, s: Session, role: str, when: str) -> HostOutcome:
        host = s.host
        found = releases.parse_last_two(s.run(releases.last_two_command(role)).stdout)
        if found is None:
            return HostOutcome(host.name, None, None, State.FAILED,
                               "no earlier release recorded on this host")
        current, previous = found
        files = files_for(role, self.inv.roles_present()) if role in ROLE_FILES else ()
        config_push.restore_files(s, [remote_path(role, f) for f in files], when)
        # The label of the release rolled back to: from the files as they now are.
        contents = [(f, s.run(quiet(join(["cat", remote_path(role, f)]))).stdout)
                    for f in files]
        before = docker.parse_ps(s.run(docker.ps(role), check=True).stdout)
        specs = specs_for(self.inv, host, role, version=previous,
                          config_hash=config_digest(contents), count=len(before) or None)
        for spec in specs:
            s.run(docker.replace(spec), check=True)
        gate = self._health_gate(s, role, specs)
        if gate.ok:
            s.run(releases.record_command(role, previous, when))
            return HostOutcome(host.name, current, previous, State.UPDATED, gate.check.what)
        return HostOutcome(host.name, current, None, State.FAILED,
                           f"health check failed after rollback: {gate.check.what}")

    def _run_batches(self, report: RoleReport, plan: list[list[Host]], max_fail: int,
                     label: str, replace: Callable[[Session, str], HostOutcome]) -> None:
        """Batch after batch; more than `max_fail` failed hosts in one stops the rollout."""
        report.batches = len(plan)
        for i, group in enumerate(plan, start=1):
            step = f"{report.role} {label} {i}/{len(plan)} ({', '.join(h.name for h in group)})"
            self.on_event(report.role, f"{label} {i}/{len(plan)}: "
                                       f"{', '.join(h.name for h in group)}")
            self._at(step, group)
            when = config_push.stamp()
            outcomes = self._batch(report.role, group, lambda s, w=when: replace(s, w), step)
            report.outcomes += outcomes
            failed = [o for o in outcomes if o.state != State.UPDATED]
            if len(failed) > max_fail:
                lost = [o.host for o in failed if o.state == State.UNREACHABLE]
                bad = [o.host for o in failed if o.state != State.UNREACHABLE]
                why = [f"failed its health check on {', '.join(bad)}"] if bad else []
                why += [f"lost {', '.join(lost)} (stopped answering)"] if lost else []
                report.stopped = f"{label} {i}/{len(plan)} {' and '.join(why)}; rollout stopped"
                report.outcomes += [HostOutcome(h.name, None, None, State.NOT_REACHED)
                                    for g in plan[i:] for h in g]
                return

    def _facts(self, s: Session, role: str, files: list[Rendered]) -> RoleFacts:
        ps = s.run(docker.ps(role), check=True).stdout
        paths = [f.path for f in files]
        sums = cfg.parse_checksums(s.run(cfg.checksums(paths), check=True).stdout) \
            if paths else cfg.HostFacts({}, frozenset())
        return RoleFacts(tuple(docker.parse_ps(ps)), role in sums.pending, sums.sums)

    # -- one batch ---------------------------------------------------------------------------

    def _batch(self, role: str, group: list[Host],
               replace: Callable[[Session], HostOutcome], step: str) -> list[HostOutcome]:
        put_back = None
        if role == "web":
            if self.change is not None:  # Ctrl-C from here on: back into rotation if alive
                put_back = self.change.on_interrupt(
                    "web hosts back into nginx's rotation",
                    lambda: self._back_in_rotation(group))
            self._drain(group)
        results = self.runner.each(group, replace, what=step)
        outcomes = [r.value if r.ok else _lost(h, r) for h, r in zip(group, results,
                                                                     strict=True)]
        if role == "web":
            # A host that stopped answering stays out: what it runs now is unknown.
            lost = [h for h, o in zip(group, outcomes, strict=True)
                    if o.state == State.UNREACHABLE]
            self._at(f"{step}: back into nginx's rotation")
            self.on_event(role, f"{', '.join(h.name for h in group if h not in lost) or 'none'}"
                                f": back into nginx's rotation" + (
                                    f"; {', '.join(h.name for h in lost)} left out "
                                    "(unreachable)" if lost else ""))
            view = self._nginx_view()
            self._push_nginx(frozenset(f"{h.address}:{p}" for h in lost
                                       for p in web_ports(view, h)))
            if put_back is not None:
                put_back()
        return outcomes

    def _replace(self, s: Session, role: str, files: list[Rendered], version: str | None,
                 count: int | None, when: str) -> HostOutcome:
        host = s.host
        if role == "db":  # a fenced host (an old primary) is only ever started by db.rejoin
            s.run(postgres.not_fenced(host.name), check=True)
        before = docker.parse_ps(s.run(docker.ps(role), check=True).stdout)
        s.run(prepare_dirs(self.inv, host, role), check=True)
        pushed = config_push.push_host(s, self.inv, files, self.secrets, when)
        if role == "db":
            self._prepare_db(s)
        want = self.wanted(host, role, files, version, count)
        s.run(docker.ensure_image(want[0].image), check=True, timeout=600)
        for spec in want:
            s.run(docker.replace(spec), check=True)
        for extra in {c.name for c in before} - {sp.name for sp in want}:
            s.run(chain(docker.stop(extra), docker.remove(extra)))
        if role == "db" and host.name == self.state.primary:
            self._bootstrap_primary(s, want[0])
        if role == "backup":  # idempotent; the database hosts' archiving works from here on
            s.run(pgbackrest.stanza_create(), check=True, timeout=300)
        gate = self._health_gate(s, role, want)
        old = running_version(before)
        if gate.ok:
            s.run(cfg.clear_pending(role))
            s.run(releases.record_command(role, want[0].label("version") or "", when))
            keep = int(settings(self.inv, role, host).get("keep_images", KEEP_IMAGES))
            s.run(docker.prune_images(want[0].image.rsplit(":", 1)[0], keep))
            return HostOutcome(host.name, old, want[0].label("version"), State.UPDATED,
                               gate.check.what)
        why = health.failure(gate.out.exit_code, gate.check, self._timeout(role))
        self.on_event(role, f"{host.name}: {why}, rolling back")
        back = self._restore(s, role, before, pushed.updated, when)
        return HostOutcome(host.name, old, old if back else None,
                           State.ROLLED_BACK if back else State.FAILED,
                           f"health check failed: {why}")

    def _reload(self, s: Session, role: str, files: list[Rendered], when: str
                ) -> HostOutcome:
        """Push files whose change a reload applies; the containers keep running. Unhealthy
        afterwards: the previous files back, reloaded again."""
        host = s.host
        running = docker.parse_ps(s.run(docker.ps(role), check=True).stdout)
        version = running_version(running)
        pushed = config_push.push_host(s, self.inv, files, self.secrets, when)
        want = specs_for(self.inv, host, role, count=len(running) or None)
        gate = self._health_gate(s, role, want)
        if gate.ok:
            return HostOutcome(host.name, version, version, State.RELOADED,
                               ", ".join(pushed.updated) or "pending reload applied")
        self.on_event(role, f"{host.name}: unhealthy after reload ({gate.check.what}), "
                            "rolling back")
        config_push.restore_files(s, pushed.updated, when)
        s.run(reload_command(role), check=True)
        return HostOutcome(host.name, version, version, State.ROLLED_BACK,
                           f"health check failed after reload: {gate.check.what}")

    def _restore(self, s: Session, role: str, before: list[docker.Running],
                 changed_files: list[str], when: str) -> bool:
        """Put the containers (and config files) the host ran before back; True if healthy."""
        config_push.restore_files(s, changed_files, when)
        if not before:
            for spec in specs_for(self.inv, s.host, role):
                s.run(chain(docker.stop(spec.name), docker.remove(spec.name)))
            return False
        specs = specs_for(self.inv, s.host, role, version=before[0].version,
                          config_hash=before[0].config, count=len(before))
        for spec in specs:
            s.run(docker.replace(spec), check=True)
        return self._health_gate(s, role, specs).ok

    def _health_gate(self, s: Session, role: str, specs: list[ContainerSpec], *,
                     timeout: float | None = None, check: bool = False) -> Gate:
        """Wait on the host, up to the role's health timeout (or `timeout`), until `specs`
        pass the role's health check; `check`: raise CommandFailed if they never do."""
        hc = self._health(s.host, role, specs)
        wait = self._timeout(role) if timeout is None else timeout
        return Gate(hc, s.run(health.until_healthy(hc, wait), stdin=hc.stdin,
                              timeout=wait + 30, check=check))

    def _timeout(self, role: str) -> float:
        """How long a role's new containers get to become healthy (inventory: health_timeout)."""
        return float(settings(self.inv, role).get("health_timeout", self.health_timeout))

    def _health(self, host: Host, role: str, specs: list[ContainerSpec]) -> health.HealthCheck:
        secret = {"redis-cache": "redis_password", "redis-queue": "redis_password",
                  "pgbouncer": "pgbouncer_admin_password"}.get(role)
        return health.check(self.inv, host, role, specs,
                            self.secrets.get(secret) if secret else "", self.state.primary)

    # -- web: out of nginx's rotation and back --------------------------------------------

    def _drain(self, group: list[Host]) -> frozenset[str]:
        """Take the group's web processes out of nginx's rotation, then wait on each host
        until the requests nginx had already sent them are answered: only then may their
        containers stop (a fixed pause was not enough: a slow request got a 502)."""
        view = self._nginx_view()  # before the pop: what nginx lists for them until now
        serving = {h.name: web_ports(view, view.host(h.name)) for h in group}
        for h in group:  # from now on nginx lists this host as the rollout leaves it
            self.scaling_from.pop(h.name, None)
        drained = frozenset(f"{h.address}:{p}" for h in group for p in web_ports(self.inv, h))
        self._push_nginx(drained)
        self.on_event("web", f"{', '.join(h.name for h in group)}: out of nginx's rotation; "
                             "waiting for the requests they already have")
        results = self.runner.each(group, lambda s: s.run(
            health.until_no_requests(serving[s.host.name] + web_ports(self.inv, s.host)),
            timeout=health.DRAIN_TIMEOUT + 30), what="the drain of its requests")
        for r in results:
            if not r.ok or not r.value.ok:
                self.on_event("web", f"{r.host.name}: requests still open after "
                                     f"{health.DRAIN_TIMEOUT:g} s of drain; going on")
        return drained

    def _back_in_rotation(self, group: list[Host]) -> str:
        """After Ctrl-C mid-batch: the group's hosts whose web processes all run go back
        into nginx's rotation; a host with one missing stays out (it would only fail
        requests over to the others); returns what it did."""
        view = self._nginx_view()
        results = self.runner.each(group, lambda s: docker.parse_ps(
            s.run(docker.ps("web"), check=True, timeout=15).stdout),
            what="reading the web containers")
        back, out = [], []
        for h, r in zip(group, results, strict=True):
            want = {sp.name for sp in specs_for(view, h, "web")}
            up = {c.name for c in r.value if c.up} if r.ok else set()
            (back if r.ok and want <= up else out).append(h)
        drained = frozenset(f"{h.address}:{p}" for h in out for p in web_ports(view, h))
        self._push_nginx(drained)
        said = [f"{h.name} back in nginx's rotation" for h in back]
        said += [f"{h.name} left out of nginx's rotation (its web processes are not all "
                 f"running)" for h in out]
        return "; ".join(said)

    def push_nginx(self) -> None:
        """nginx's config as the inventory says now (after a web scale)."""
        self._push_nginx(frozenset())

    def _push_nginx(self, drained: frozenset[str]) -> None:
        nginx = self.inv.with_role("nginx")
        if not nginx:
            return
        rendered = render_all(self._nginx_view(), nginx, self.secrets, self.state,
                              drained=drained, roles=("nginx",))
        when = config_push.stamp()
        results = self.runner.each(nginx, lambda s: config_push.push_host(
            s, self.inv, rendered[s.host.name], self.secrets, when))
        bad = [r for r in results if not r.ok]
        if bad:
            raise DeployFailed("cannot update nginx's rotation: " +
                               "; ".join(f"{r.host.name}: {r.error}" for r in bad))

    def _nginx_view(self) -> Inventory:
        """The inventory nginx is rendered from: web hosts a scale has not reached yet keep
        the process count they still run."""
        if not self.scaling_from:
            return self.inv
        hosts = tuple(replace(h, vars={**h.vars, "processes": self.scaling_from[h.name]})
                      if h.name in self.scaling_from else h for h in self.inv.hosts)
        return replace(self.inv, hosts=hosts)

    # -- PostgreSQL ----------------------------------------------------------------------------

    def _prepare_db(self, s: Session) -> None:
        """initdb on the primary or clone a replica, once; never over an existing cluster."""
        if s.run(postgres.has_data()).exit_code == 0:
            return
        uid = int(settings(self.inv, "db", s.host).get("uid", 101))
        image = specs_for(self.inv, s.host, "db")[0].image
        s.run(postgres.prepare_data_root(uid), check=True)
        if s.host.name == self.state.primary:
            self.on_event("db", f"{s.host.name}: initdb (new cluster)")
            s.run(postgres.initdb(image), stdin=self.secrets.get("postgres_password").encode(),
                  check=True, timeout=120)
            return
        primary = self.inv.host(self.state.primary)
        port = int(settings(self.inv, "db", primary)["port"])
        self.on_event("db", f"{s.host.name}: cloning from {primary.name} (pg_basebackup)")
        s.run(postgres.clone_replica(image, primary.address, port, s.host.name),
              stdin=postgres.replica_stdin(primary.address, port, s.host.name,
                                           self.secrets.get("replication_password")),
              check=True, timeout=600)

    def start_primary(self, s: Session, timeout: float) -> list[ContainerSpec]:
        """After a restore: the db files and containers exactly as a deploy has them, up as
        the primary (recovery may first replay much WAL: up to `timeout` seconds), then
        users and replication slots again (a backup holds no slot)."""
        files = self.render([s.host], "db")[s.host.name]
        config_push.push_host(s, self.inv, files, self.secrets, config_push.stamp())
        want = self.wanted(s.host, "db", files, None)
        s.run(docker.ensure_image(want[0].image), check=True, timeout=600)
        for spec in want:
            s.run(docker.replace(spec), check=True)
        self._bootstrap_primary(s, want[0], timeout=timeout)
        return want

    def _bootstrap_primary(self, s: Session, spec: ContainerSpec, *,
                           timeout: float | None = None) -> None:
        """Users, database and replication slots (idempotent SQL, run on every deploy)."""
        self._health_gate(s, "db", [spec], timeout=timeout or self.health_timeout, check=True)
        replicas = [h.name for h in self.inv.with_role("db") if h.name != s.host.name]
        sql = postgres.bootstrap_sql(
            self.secrets.register(scram_sha256(self.secrets.get("db_password"), "sentry")),
            self.secrets.register(scram_sha256(self.secrets.get("replication_password"),
                                               "replicator")),
            replicas)
        s.run(postgres.psql_stdin(spec.name), stdin=sql.encode(), check=True)

    # -- migrations --------------------------------------------------------------------------

    def migrate(self, version: str | None) -> str:
        """Run the schema migration once, on the first web host; returns where it ran."""
        host = self.inv.with_role("web")[0]
        files = self.render([host], "web")[host.name]
        spec = specs_for(self.inv, host, "migrate", version=version)[0]

        def step(s: Session) -> None:
            config_push.push_host(s, self.inv, files, self.secrets, config_push.stamp())
            s.run(chain(docker.remove(spec.name), docker.run_once(spec)), check=True,
                  timeout=600)

        self._at(f"migrations on {host.name}", [host])
        [r] = self.runner.each([host], step, what=f"migrations on {host.name}")
        if not r.ok:
            raise DeployFailed(f"migration on {host.name} failed: {r.error}")
        return host.name


def _lost(h: Host, r) -> HostOutcome:
    """The outcome of a host whose step raised: failed, or unreachable (it stopped
    answering: what it runs now is unknown)."""
    state = State.UNREACHABLE if r.status == "unreachable" else State.FAILED
    return HostOutcome(h.name, None, None, state, r.error or "")


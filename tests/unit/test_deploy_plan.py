"""The deploy plan per host (pure: exact plans from facts), the outcome states and their
styles, and the procedure's shared steps: the health gate, restoring kept files, and a
role's rollout driven by its plan (a scripted runner stands in for the hosts)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sentryfab import inventory, secrets
from sentryfab.configs import commands as cfg
from sentryfab.configs.context import initial_state
from sentryfab.containers import health, releases
from sentryfab.containers.docker import Running
from sentryfab.containers.spec import specs_for
from sentryfab.plans.deploy import (
    LOST,
    NOT_INSPECTED,
    UNTOUCHED,
    Action,
    HostPlan,
    RoleFacts,
    RolePlan,
    State,
    differences,
    plan_role,
    running_version,
    stale_files,
)
from sentryfab.procedures import configs as config_push
from sentryfab.procedures.deploy import Deployer, HostOutcome
from sentryfab.remote import CommandFailed, CommandOutput, Unreachable
from sentryfab.results import HostResult
from sentryfab.ui.deploy import STATE_STYLE

HERE = Path(__file__).resolve().parent
LAB = inventory.load(HERE / "data" / "lab-hosts.yaml")
CONF, YML = "/etc/sentryfab/web/sentry.conf.py", "/etc/sentryfab/web/config.yml"
FILES = {CONF: "a" * 64, YML: "b" * 64}


def want(host: str = "web-1", version: str = "9.1.2", config: str = "c1", role: str = "web"):
    return specs_for(LAB, LAB.host(host), role, version=version, config_hash=config)


def web(n: int, version: str = "9.1.2", config: str = "c1", state: str = "running"):
    return Running(f"sentry-web-{n}", state, "lab/sentry:9.1.2", "web", version, config)


def runs(version: str = "9.1.2", config: str = "c1") -> tuple[Running, ...]:
    return (web(1, version, config), web(2, version, config))


# -- the plan ---------------------------------------------------------------------------------

def test_each_host_gets_its_action_and_why():
    facts = {
        "web-1": RoleFacts(runs(), False, dict(FILES)),
        "web-2": RoleFacts(runs(), False, {CONF: "a" * 64, YML: "0" * 64}),
        "web-3": RoleFacts(runs(), True, dict(FILES)),
        "web-4": RoleFacts(runs("9.1.1"), False, {}),
        "web-5": None,
    }
    plan = plan_role("web", facts, {h: want() for h in facts}, {h: FILES for h in facts})
    assert plan == RolePlan("web", (
        HostPlan("web-1", Action.UNCHANGED, "9.1.2"),
        HostPlan("web-2", Action.RELOAD, "9.1.2", (f"{YML} differs",)),
        HostPlan("web-3", Action.RELOAD, "9.1.2", ("an apply is pending",)),
        HostPlan("web-4", Action.REPLACE, "9.1.1", ("sentry-web-1 runs 9.1.1, wants 9.1.2",
                                                    "sentry-web-2 runs 9.1.1, wants 9.1.2")),
        HostPlan("web-5", Action.UNINSPECTED),
    ), ("web-4",))
    assert (plan.unchanged, plan.reload, plan.replace, plan.uninspected) == (
        ["web-1"], ["web-2", "web-3"], ["web-4"], ["web-5"])
    assert plan.stopped == NOT_INSPECTED == \
        "some hosts could not be inspected; nothing was changed"


def test_a_plan_with_every_host_inspected_may_go_on():
    facts = {"web-1": RoleFacts(runs(), False, dict(FILES)), "web-2": RoleFacts(())}
    plan = plan_role("web", facts, {h: want(h) for h in facts}, {h: FILES for h in facts})
    assert plan.stopped == ""
    assert plan.hosts[1] == HostPlan("web-2", Action.REPLACE, None,
                                     ("sentry-web-1 missing", "sentry-web-2 missing"))


def test_what_differs_in_the_containers_is_said():
    assert differences(want(), runs()) == ()
    assert differences(want(), runs()[:1]) == ("sentry-web-2 missing",)
    assert differences(want(), (*runs(), web(4), web(3))) == (
        "sentry-web-3 not wanted", "sentry-web-4 not wanted")
    assert differences(want(), (web(1), web(2, state="exited"))) == (
        "sentry-web-2 not running (exited)",)
    assert differences(want(), (web(1, config="c0"), web(2, "", state=""))) == (
        "sentry-web-1 was started with other settings", "sentry-web-2 not running (no state)",
        "sentry-web-2 runs ?, wants 9.1.2")


def test_files_are_current_only_when_all_match_and_nothing_is_pending():
    assert stale_files(False, dict(FILES), FILES) == ()
    assert stale_files(False, {**FILES, "/other": "x"}, FILES) == ()
    assert stale_files(True, {}, FILES) == (f"{CONF} differs", f"{YML} differs",
                                            "an apply is pending")
    assert stale_files(False, {}, {}) == ()  # a role without config files


def test_a_role_without_files_is_unchanged_when_its_containers_are():
    specs = specs_for(LAB, LAB.host("redis-cache-1"), "redis-cache", version="6", config_hash="")
    running = tuple(Running(sp.name, "running", sp.image, "redis-cache", "6", "")
                    for sp in specs)
    plan = plan_role("redis-cache", {"redis-cache-1": RoleFacts(running)},
                     {"redis-cache-1": specs}, {"redis-cache-1": {}})
    assert plan.hosts == (HostPlan("redis-cache-1", Action.UNCHANGED, "6"),)


def test_the_database_primary_is_replaced_first_and_no_other_role_is_reordered():
    facts = {h: RoleFacts(()) for h in ("db-1", "db-2", "db-3")}
    db = {h: want("db-1", "1", role="db") for h in facts}
    assert plan_role("db", facts, db, {}, primary="db-2").order == ("db-2", "db-1", "db-3")
    assert plan_role("db", facts, db, {}, primary="db-2").replace == ["db-1", "db-2", "db-3"]
    assert plan_role("db", facts, db, {}, primary=None).order == ("db-1", "db-2", "db-3")
    webs = {h: RoleFacts(()) for h in ("web-2", "web-1")}
    assert plan_role("web", webs, {h: want(h) for h in webs}, {},
                     primary="web-1").order == ("web-2", "web-1")


def test_the_running_version_is_that_of_the_containers_up():
    assert running_version(runs()) == "9.1.2"
    assert running_version((web(1, "9.1.2"), web(2, "9.1.1"))) == "9.1.1,9.1.2"
    assert running_version((web(1, state="exited"),)) is None
    assert running_version(()) is None


# -- states and their styles --------------------------------------------------------------

def test_state_values_are_the_words_in_json_output():
    assert [s.value for s in State] == ["unchanged", "updated", "reloaded", "rolled back",
                                        "failed", "unreachable", "not reached"]
    assert State.ROLLED_BACK == "rolled back" and f"{State.NOT_REACHED}" == "not reached"
    assert json.dumps(HostOutcome("web-1", None, None, State.ROLLED_BACK).__dict__) == (
        '{"host": "web-1", "before": null, "after": null, "state": "rolled back", '
        '"detail": ""}')
    assert LOST == {"failed", "unreachable"} and UNTOUCHED == {"unchanged", "not reached"}


def test_every_state_has_its_style_and_a_missing_one_fails_at_import():
    assert STATE_STYLE == {"unchanged": "dim", "updated": "green", "reloaded": "cyan",
                           "rolled back": "yellow", "failed": "red", "unreachable": "red bold",
                           "not reached": "magenta"}
    source = (HERE.parents[1] / "src" / "sentryfab" / "ui" / "deploy.py").read_text()
    trimmed = source.replace('State.NOT_REACHED: "magenta"', "")
    assert trimmed != source
    with pytest.raises(RuntimeError, match="not reached"):
        exec(compile(trimmed, "deploy.py", "exec"),
             {"__name__": "sentryfab.ui._trimmed", "__package__": "sentryfab.ui"})


# -- the procedure's shared steps -----------------------------------------------------------

class Session:
    """A host that answers from a script and records what it was sent."""

    def __init__(self, host, answer, sent):
        self.host, self.answer, self.sent, self.cut = host, answer, sent, False
        self.user, self.connected = "root", True

    def run(self, command, *, timeout=None, on_line=None, check=False, stdin=None):
        self.sent.append((self.host.name, command, stdin, timeout, check))
        code, out = self.answer(self.host.name, command)
        if code is None:
            raise Unreachable("stopped answering")
        result = CommandOutput(command, code, out, "", 0.0)
        if check and not result.ok:
            raise CommandFailed(result)
        return result


class Runner:
    """Steps run host after host, as the real runner reports them."""

    def __init__(self, answer):
        self.answer, self.sent = answer, []

    def session(self, host):
        return Session(host, self.answer, self.sent)

    def each(self, hosts, step, *, on_done=None, what=""):
        out = []
        for h in hosts:
            try:
                out.append(HostResult(h, "ok", value=step(self.session(h))))
            except CommandFailed as e:
                out.append(HostResult(h, "failed", error=f"exit {e.output.exit_code}"))
            except Unreachable as e:
                out.append(HostResult(h, "unreachable", error=str(e)))
        return out


@pytest.fixture
def deployer(tmp_path):
    path = tmp_path / "secrets.yaml"
    shutil.copyfile(HERE / "data" / "fake-secrets.yaml", path)
    path.chmod(0o600)
    events: list[tuple[str, str]] = []
    d = Deployer(Runner(lambda h, c: (0, "")), LAB, secrets.load(path, environ={}),
                 initial_state(LAB), on_event=lambda r, m: events.append((r, m)))
    d.events = events  # type: ignore[attr-defined]
    return d


def test_restore_files_puts_back_each_kept_version_as_the_loops_did():
    kept = {CONF: "/etc/sentryfab/web/.history/sentry.conf.py.1"}
    runner = Runner(lambda h, c: (0, next((k + "\n" for p, k in kept.items()
                                           if c == cfg.newest_history(p)), "")))
    s = runner.session(LAB.host("web-1"))
    assert config_push.restore_files(s, [CONF, YML], "T") == [CONF]
    assert [c for _, c, *_ in runner.sent] == [
        cfg.newest_history(CONF), cfg.restore(CONF, kept[CONF], "T"), cfg.newest_history(YML)]
    runner.sent.clear()
    config_push.restore_files(s, [CONF, YML], "T", before=lambda p: s.run(
        cfg.mark_pending("web", [p]), check=True))
    assert [c for _, c, *_ in runner.sent] == [
        cfg.newest_history(CONF), cfg.mark_pending("web", [CONF]),
        cfg.restore(CONF, kept[CONF], "T"), cfg.newest_history(YML)]
    assert all(check for *_, check in runner.sent)


def test_the_health_gate_waits_as_each_caller_did(deployer):
    host, specs = LAB.host("web-1"), want()
    hc = health.check(LAB, host, "web", specs, "", deployer.state.primary)
    s = deployer.runner.session(host)
    gate = deployer._health_gate(s, "web", specs)
    assert gate.ok and gate.check == hc
    # The role's health_timeout (120 s in the lab), 30 s more for the round trip.
    assert deployer.runner.sent[-1] == ("web-1", health.until_healthy(hc, 120.0), None,
                                        150.0, False)
    deployer._health_gate(s, "web", specs, timeout=90.0, check=True)
    assert deployer.runner.sent[-1] == ("web-1", health.until_healthy(hc, 90.0), None,
                                        120.0, True)
    redis = LAB.host("redis-cache-1")
    rs = specs_for(LAB, redis, "redis-cache")
    deployer._health_gate(deployer.runner.session(redis), "redis-cache", rs)
    secret = deployer.secrets.get("redis_password")
    assert deployer.runner.sent[-1][2:] == (secret.encode(), 120.0, False)  # 90 s default


def test_a_rollback_reads_the_release_history_and_records_the_one_it_went_back_to(deployer):
    history = "20260101T000000Z 9.1.1\n20260102T000000Z 9.1.2\n"
    deployer.runner.answer = lambda h, c: (0, history if c == releases.last_two_command(
        "worker") else "")
    report = deployer.rollback_role("worker", [LAB.host("worker-2")])
    assert [(o.host, o.before, o.after, o.state) for o in report.outcomes] == [
        ("worker-2", "9.1.2", "9.1.1", State.UPDATED)]
    sent = [c for _, c, *_ in deployer.runner.sent]
    assert sent[0] == "tail -n 2 /var/lib/sentryfab/releases/worker 2>/dev/null; true"
    assert sent[-1].startswith("mkdir -p /var/lib/sentryfab/releases && printf '%s %s\\n' ")
    assert sent[-1].endswith(" 9.1.1 >> /var/lib/sentryfab/releases/worker")


def _ps(running) -> str:
    return "\n".join("\t".join([c.name, c.state, c.image, c.role, c.version, c.config])
                     for c in running)


def test_deploy_role_follows_its_plan(deployer, monkeypatch):
    """web-1 up to date and web-2 with files to reload: one reload, no batch; then with
    web-2 not answering, nothing changes."""
    monkeypatch.setattr(config_push, "stamp", lambda: "T")
    hosts = LAB.with_role("web")
    rendered = deployer.render(hosts, "web")
    config = {h.name: deployer.wanted(h, "web", rendered[h.name], None)[0].label("config")
              for h in hosts}

    def answer(host, command):
        if command.startswith("docker ps"):
            return 0, _ps(runs(config=config[host]))
        if command.startswith("sha256sum"):  # web-2 lacks its files: a reload
            sums = rendered[host] if host == "web-1" else []
            return 0, "".join(f"{f.sha256}  {f.path}\n" for f in sums) + \
                "--sentryfab-pending--\n"
        return 0, ""

    deployer.runner.answer = answer
    report = deployer.deploy_role("web", hosts)
    assert [(o.host, o.before, o.after, o.state) for o in report.outcomes] == [
        ("web-1", "9.1.2", "9.1.2", State.UNCHANGED),
        ("web-2", "9.1.2", "9.1.2", State.RELOADED)]
    assert report.ok and report.changed and report.stopped == "" and report.batches == 0
    assert deployer.events == [("web", "web-2: config changed, reloading")]

    deployer.runner.answer = lambda h, c: (None, "") if h == "web-2" else answer(h, c)
    report = deployer.deploy_role("web", hosts)
    assert [(o.host, o.state, o.detail) for o in report.outcomes] == [
        ("web-1", State.UNCHANGED, ""), ("web-2", State.UNREACHABLE, "stopped answering")]
    assert report.stopped == NOT_INSPECTED and not report.ok

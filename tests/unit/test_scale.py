"""web.scale: what nginx lists while the rollout is under way, and partial selections;
deploy's --tag rules. Refusals are reached by calling the procedures; one goes through the
CLI for its exit code."""

from __future__ import annotations

import dataclasses
import re
import shutil
import sys
from pathlib import Path

import pytest

from sentryfab import inventory, secrets
from sentryfab.configs.context import initial_state
from sentryfab.configs.render import render_all
from sentryfab.errors import UsageError
from sentryfab.procedures import rollout
from sentryfab.procedures.deploy import Deployer

HERE = Path(__file__).resolve().parent
LAB = HERE / "data" / "lab-hosts.yaml"
REFERENCE = HERE.parents[1] / "hosts.yaml"
FAB = str(Path(sys.executable).parent / "fab")


def _never(*args, **kwargs):
    """Stands in for connecting and for loading the secrets: a refusal comes before both
    (the reference hosts are unreachable from here: reaching any would fail differently)."""
    raise AssertionError("connected or loaded the secrets before refusing")


def _servers(inv, sec) -> list[str]:
    [conf] = render_all(inv, [inv.host("nginx-1")], sec, initial_state(inv),
                        roles=("nginx",))["nginx-1"]
    return re.findall(r"server (\S+) max_fails", conf.content)


def test_nginx_lists_hosts_the_scale_has_not_reached_with_what_they_run(tmp_path):
    path = tmp_path / "secrets.yaml"
    shutil.copyfile(HERE / "data" / "fake-secrets.yaml", path)
    path.chmod(0o600)
    sec = secrets.load(path, environ={})
    inv = inventory.load(LAB)
    scaled = dataclasses.replace(inv, roles={**inv.roles, "web": {**inv.role_vars("web"),
                                                                  "processes": 3}})
    d = Deployer(None, scaled, sec, initial_state(inv),  # type: ignore[arg-type]
                 scaling_from={"web-1": 2, "web-2": 2})
    assert sorted(_servers(d._nginx_view(), sec)) == [
        "10.231.0.11:9000", "10.231.0.11:9001", "10.231.0.12:9000", "10.231.0.12:9001"]
    d.scaling_from.pop("web-1")  # web-1's batch is under way: its new ports are listed
    assert sorted(_servers(d._nginx_view(), sec)) == [
        "10.231.0.11:9000", "10.231.0.11:9001", "10.231.0.11:9002",
        "10.231.0.12:9000", "10.231.0.12:9001"]
    d.scaling_from.clear()
    assert d._nginx_view() is scaled


def test_a_scale_of_part_of_a_role_is_refused_before_anything_is_touched():
    opts = rollout.ScaleOptions(role="web", processes=4, hosts="web-1,web-2")
    with pytest.raises(UsageError) as refused:
        rollout.scale(inventory.load(REFERENCE), opts, _never, connect=_never)
    assert refused.value.exit_code == 2
    assert ("web.scale sets roles.web.processes, which every web host follows, but the "
            "selection leaves out web-3, web-4") in str(refused.value)
    assert "give those hosts their own 'processes' in their vars first" in str(refused.value)


def test_a_scale_without_a_count_and_a_rollback_without_roles_are_refused():
    for make, says in ((lambda: rollout.ScaleOptions(role="worker", processes=0),
                        "worker.scale needs --processes N (at least 1)"),
                       (lambda: rollout.RollbackOptions(roles=None),
                        "deploy.rollback needs --roles (which role to roll back)")):
        with pytest.raises(UsageError) as refused:
            make()
        assert refused.value.exit_code == 2
        assert str(refused.value) == says


def test_a_tag_of_sentry_10_or_later_is_refused_before_anything_connects():
    """--tag goes through the inventory's own rule."""
    inv = inventory.load(REFERENCE)
    for tag, needs in (("24.1.0", "Relay"), ("10.0.0", "Kafka")):
        with pytest.raises(UsageError) as refused:  # deploy.web
            rollout.deploy(inv, rollout.DeployOptions(roles=("migrate", "web"), tag=tag),
                           _never, connect=_never)
        assert refused.value.exit_code == 2
        said = str(refused.value)
        assert f"--tag {tag}: Sentry {tag} needs" in said and needs in said
        assert 'sentryfab runs Sentry up to 9.1.2: use tag: "9.1.2"' in said


def test_a_tag_of_redis_7_or_later_is_refused_before_anything_connects():
    inv = inventory.load(REFERENCE)
    with pytest.raises(UsageError) as refused:  # deploy.redis
        rollout.deploy(inv, rollout.DeployOptions(roles=("redis-cache", "redis-queue"),
                                                  tag="7.2"), _never, connect=_never)
    assert refused.value.exit_code == 2
    assert ("--tag 7.2: Redis 7.2: Sentry 9's digest scripts write Lua globals"
            in str(refused.value))

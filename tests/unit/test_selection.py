"""--roles / --hosts / --exclude, and folding host lists and outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from sentryfab import inventory
from sentryfab.errors import SelectionError
from sentryfab.folding import fold, fold_names
from sentryfab.inventory import Host
from sentryfab.results import HostResult
from sentryfab.selection import Selection, select

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ref():
    return inventory.load(REPO / "hosts.yaml")


def names(hosts):
    return [h.name for h in hosts]


def test_roles_select_in_inventory_order(ref):
    assert names(select(ref, Selection(roles="db,pgbouncer"))) == \
        ["db-1", "db-2", "pgbouncer-1", "pgbouncer-2"]


def test_redis_group_means_both_profiles(ref):
    assert names(select(ref, Selection(roles="redis"))) == \
        [f"redis-cache-{i}" for i in range(1, 6)] + ["redis-queue-1"]


def test_host_globs_intersect_roles_and_exclude_removes(ref):
    sel = Selection(roles="web", hosts="web-1,web-2*", exclude="web-2[5-9]")
    assert names(select(ref, sel)) == ["web-1", "web-2"] + [f"web-{i}" for i in range(20, 25)]


def test_address_selects_too(ref):
    assert names(select(ref, Selection(hosts="10.20.4.11"))) == ["db-1"]


def test_no_selection_means_every_host(ref):
    assert len(select(ref, Selection())) == len(ref.hosts) == 56


def test_unknown_role_is_an_error_with_a_suggestion(ref):
    with pytest.raises(SelectionError, match=r"--roles: unknown role 'wrker' \(did you mean "
                                             r"'worker'\?\)"):
        select(ref, Selection(roles="wrker"))


def test_pattern_matching_nothing_is_an_error(ref):
    with pytest.raises(SelectionError, match=r"--hosts: no host matches 'web-99'"):
        select(ref, Selection(hosts="web-1,web-99"))


def test_empty_result_is_an_error_not_a_no_op(ref):
    with pytest.raises(SelectionError) as e:
        select(ref, Selection(roles="db", exclude="db-*"))
    assert str(e.value) == "the selection --roles=db --exclude=db-* matches no host: nothing to do"
    assert e.value.exit_code == 2


@pytest.mark.parametrize("given, folded", [
    (["web-1"], "web-1"),
    ([f"web-{i}" for i in range(1, 31)], "web-[1-30]"),
    (["web-1", "web-2", "web-4", "web-5", "web-6", "web-9"], "web-[1-2,4-6,9]"),
    (["web-2", "db-1", "web-1", "nginx"], "db-1, nginx, web-[1-2]"),
    (["node01", "node02"], "node01, node02"),
])
def test_fold_names(given, folded):
    assert fold_names(given) == folded


def _r(name: str, status="ok", out="", code=0, error=None) -> HostResult:
    return HostResult(Host(name, "10.0.0.1"), status, exit_code=code, stdout=out, error=error)


def test_identical_outputs_fold_into_one_block_in_first_seen_order():
    results = [_r(f"web-{i}", out="same\n") for i in range(1, 31)]
    results.insert(3, _r("web-x", out="other\n"))
    results.append(_r("db-1", "unreachable", code=None, error="connection refused"))
    blocks = fold(results)
    assert [(b.label, b.status, b.stdout) for b in blocks] == [
        ("web-[1-30] (30 hosts)", "ok", "same\n"),
        ("web-x", "ok", "other\n"),
        ("db-1", "unreachable", ""),
    ]

"""Rollout batch sizes and splits."""

from __future__ import annotations

import pytest

from sentryfab.errors import UsageError
from sentryfab.plans.rollout import batch_size, batches


@pytest.mark.parametrize("spec, total, size", [
    ("25%", 30, 8), ("25%", 2, 1), ("100%", 30, 30), (None, 8, 2), ("3", 30, 3), (5, 2, 2),
    ("1", 1, 1),
])
def test_batch_size(spec, total, size):
    assert batch_size(spec, total) == size


@pytest.mark.parametrize("bad", ["0", "-1", "0%", "150%", "a", "2.5"])
def test_bad_batch_is_a_usage_error(bad):
    with pytest.raises(UsageError, match="--batch"):
        batch_size(bad, 10)


def test_batches_split_in_order():
    hosts = [f"web-{i}" for i in range(1, 11)]
    assert batches(hosts, "30%", "web") == [hosts[0:3], hosts[3:6], hosts[6:9], hosts[9:10]]


def test_single_instance_roles_go_one_by_one():
    assert batches(["db-1", "db-2"], "100%", "db") == [["db-1"], ["db-2"]]
    assert batches([], "25%", "web") == []

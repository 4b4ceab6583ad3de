"""The kept probe figures: where they live, what the file holds, what a bad file gives."""

from __future__ import annotations

import json

import pytest

from sentryfab.plans.forecast import TierFigure
from sentryfab.procedures import probe_figures


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    return tmp_path


def test_figures_live_in_the_state_dir_per_cluster(state, monkeypatch):
    assert probe_figures.figures_path("lab") == state / "sentryfab" / "probe" / "lab.json"
    assert probe_figures.figures_path("a/b c").name == "a_b_c.json"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(state / "home"))
    assert probe_figures.figures_path("lab") == (state / "home" / ".local" / "state" /
                                                 "sentryfab" / "probe" / "lab.json")


def test_record_keeps_each_tier_and_replaces_only_its_own(state):
    path = probe_figures.record("lab", "web", 27.8, "bench/real_sentry.py", {"threads": 4},
                                at="2025-01-31T10:00:00Z")
    probe_figures.record("lab", "worker", 8.2, "bench/real_sentry.py", {"concurrency": 1},
                         at="2025-01-31T10:05:00Z")
    probe_figures.record("lab", "worker", 9.0, "capacity.probe", at="2025-02-01T08:00:00Z")
    assert json.loads(path.read_text()) == {"cluster": "lab", "tiers": {
        "web": {"events_per_second_per_process": 27.8, "how": "bench/real_sentry.py",
                "measured_at": "2025-01-31T10:00:00Z", "settings": {"threads": 4}},
        "worker": {"events_per_second_per_process": 9.0, "how": "capacity.probe",
                   "measured_at": "2025-02-01T08:00:00Z", "settings": {}}}}
    assert probe_figures.load("lab") == {
        "web": TierFigure(27.8, "2025-01-31T10:00:00Z", "bench/real_sentry.py", {"threads": 4}),
        "worker": TierFigure(9.0, "2025-02-01T08:00:00Z", "capacity.probe", {})}
    assert probe_figures.load("sentry-prod") == {}  # another cluster's are never used
    assert [p.name for p in path.parent.iterdir()] == ["lab.json"]  # no temporary file left


def test_record_refuses_a_tier_without_throughput(state):
    with pytest.raises(ValueError, match="no throughput figure for role 'cron'"):
        probe_figures.record("lab", "cron", 1.0, "x")


@pytest.mark.parametrize("text", [
    "", "not json", "[]", '{"tiers": []}',
    '{"tiers": {"web": {"events_per_second_per_process": 0}}}',
    '{"tiers": {"web": {"events_per_second_per_process": true}}}',
    '{"tiers": {"web": {"events_per_second_per_process": "27"}}}',
    '{"tiers": {"nginx": {"events_per_second_per_process": 1000}}}',
    '{"tiers": {"web": 27.8}}'])
def test_a_file_not_understood_gives_no_figures(text):
    assert probe_figures.parse(text) == {}


def test_parse_keeps_what_it_understands():
    text = ('{"tiers": {"web": {"events_per_second_per_process": 21, "settings": "x"}, '
            '"worker": {"events_per_second_per_process": -1}}}')
    assert probe_figures.parse(text) == {"web": TierFigure(21.0)}

"""The backup role's pure layers: inventory rules, TLS material, escaping, the repository's
JSON, the restore plan and its refusals, the drill's record."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from sentryfab import inventory
from sentryfab.configs import escape, pki
from sentryfab.containers import pgbackrest
from sentryfab.errors import InventoryError
from sentryfab.plans.restore import RestoreRefused, format_time, parse_time, plan_restore
from sentryfab.topology.model import DbNode, Topology

SEED = "a-seed-for-tests"

INVENTORY = """\
cluster: t
ssh: {user: root}
sentry: {filestore: {path: /srv/f, shared: true}}
hosts:
  db-1: {address: 10.0.0.1, roles: [db], vars: {initial_primary: true}}
  db-2: {address: 10.0.0.2, roles: [db]}
  backup-1: {address: 10.0.0.9, roles: [backup]}
"""


def _problems(write_inventory, text: str) -> list[str]:
    with pytest.raises(InventoryError) as e:
        inventory.load(write_inventory(textwrap.dedent(text)))
    return e.value.problems


# --- inventory ---------------------------------------------------------------------------------

def test_a_backup_host_loads(write_inventory):
    inv = inventory.load(write_inventory(INVENTORY))
    assert [h.name for h in inv.with_role("backup")] == ["backup-1"]
    assert "backup" in inv.roles_present()


def test_the_repository_may_not_live_on_a_db_host(write_inventory):
    text = INVENTORY.replace("roles: [db]}\n  backup-1", "roles: [db, backup]}\n  backup-1")
    text = text.replace("  backup-1: {address: 10.0.0.9, roles: [backup]}\n", "")
    assert _problems(write_inventory, text) == [
        "hosts.yaml:6: hosts/db-2/roles: role 'backup' cannot share a host with 'db': losing "
        "that machine would lose the database and its backups at once; put the repository on "
        "another host"]


def test_one_repository_per_cluster(write_inventory):
    text = INVENTORY + "  backup-2: {address: 10.0.0.10, roles: [backup]}\n"
    assert _problems(write_inventory, text) == [
        "hosts.yaml:4: hosts: role 'backup' must run on one host, found 2: backup-1, backup-2 "
        "(one pgBackRest repository per cluster)"]


def test_backups_need_a_database(write_inventory):
    text = INVENTORY.replace("  db-1: {address: 10.0.0.1, roles: [db], vars: "
                             "{initial_primary: true}}\n  db-2: {address: 10.0.0.2, roles: "
                             "[db]}\n", "")
    assert _problems(write_inventory, text) == [
        "hosts.yaml:4: hosts: role 'db' has no host, but 'backup' needs it (used by "
        "backup-1): add 'db' to a host's roles"]


# --- TLS material ------------------------------------------------------------------------------

def _cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def test_certificates_are_the_same_on_every_render_and_change_with_the_seed():
    a = pki.server(SEED, "lab", "db-1", "10.0.0.1")
    pki.server.cache_clear()
    assert pki.server(SEED, "lab", "db-1", "10.0.0.1") == a
    assert pki.server(SEED + "x", "lab", "db-1", "10.0.0.1").key != a.key
    assert pki.ca_cert(SEED, "lab") != pki.ca_cert(SEED + "x", "lab")


def test_each_server_names_its_host_and_address_and_is_signed_by_the_ca():
    ca = _cert(pki.ca_cert(SEED, "lab"))
    server = _cert(pki.server(SEED, "lab", "db-1", "10.0.0.1").cert)
    client = _cert(pki.client(SEED, "lab").cert)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["db-1", "10.0.0.1"]
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == \
        "sentryfab-backup"
    for leaf in (server, client):
        leaf.verify_directly_issued_by(ca)  # raises if the signature is not the CA's
        assert leaf.not_valid_after_utc.year == 2124
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_pem_passes_the_guard_and_nothing_else_does():
    pem = pki.client(SEED, "lab").key
    assert escape.guard(escape.pem(pem)) == pem.rstrip("\n")
    for bad in ("not pem", "-----BEGIN X-----\nab cd\n-----END X-----\n", pem + "\nextra"):
        with pytest.raises(escape.Refused):
            escape.pem(bad)


def test_pgbackrest_values_and_password_file_fields():
    assert escape.pgbackrest_value("aes pass") == "aes pass"
    for bad in (" lead", "trail ", "", "a\nb"):
        with pytest.raises(escape.Refused):
            escape.pgbackrest_value(bad)
    assert escape.pgpass_field(r"p:a\ss") == r"p\:a\\ss"


# --- the repository ----------------------------------------------------------------------------

INFO = [{
    "name": "sentry", "status": {"code": 0, "message": "ok"},
    "archive": [{"id": "15-1", "min": "000000010000000000000003",
                 "max": "000000020000000000000009"}],
    "backup": [
        {"label": "20261207-100000F", "type": "full",
         "timestamp": {"start": 1796637600, "stop": 1796637660},
         "archive": {"start": "000000010000000000000003", "stop": "000000010000000000000003"},
         "info": {"size": 52428800, "delta": 52428800,
                  "repository": {"size": 6291456, "delta": 6291456}}},
        {"label": "20261207-100000F_20261207-110000D", "type": "diff",
         "timestamp": {"start": 1796641200, "stop": 1796641230},
         "archive": {"start": "000000020000000000000008", "stop": "000000020000000000000008"},
         "info": {"size": 53477376, "delta": 1048576,
                  "repository": {"size": 6400000, "delta": 131072}}},
    ]}]


def test_info_reads_backups_wal_range_and_the_oldest_point():
    repo = pgbackrest.parse_info(json.dumps(INFO))
    assert [(x.label, x.kind, x.size, x.repo_size) for x in repo.backups] == [
        ("20261207-100000F", "full", 52428800, 6291456),
        ("20261207-100000F_20261207-110000D", "diff", 53477376, 131072)]
    assert repo.oldest_restorable == datetime.fromtimestamp(1796637660, UTC)
    assert repo.latest.kind == "diff"
    assert (repo.wal_min, repo.wal_max) == ("000000010000000000000003",
                                            "000000020000000000000009")
    assert repo.repo_bytes == 6291456 + 131072 and repo.status == "ok"


def test_info_without_the_stanza_is_an_error():
    with pytest.raises(ValueError, match="no stanza 'sentry'"):
        pgbackrest.parse_info("[]")


# --- the restore plan ----------------------------------------------------------------------------

REPO = pgbackrest.parse_info(json.dumps(INFO))
OLDEST = datetime.fromtimestamp(1796637660, UTC)
NOW = OLDEST + timedelta(days=1)
DBS = ["db-1", "db-2"]


def _topo(**nodes: dict) -> Topology:
    return Topology(tuple(DbNode(name, f"10.0.0.{i}", 5432, **kw)
                          for i, (name, kw) in enumerate(nodes.items(), start=1)), ())


HEALTHY = _topo(**{"db-1": {"container": "running", "has_data": True, "in_recovery": False},
                   "db-2": {"container": "running", "has_data": True, "in_recovery": True}})
BOTH_LOST = _topo(**{"db-1": {"container": "exited", "has_data": False},
                     "db-2": {"container": "exited", "has_data": False}})


def test_a_restore_before_the_oldest_backup_names_the_oldest_point():
    with pytest.raises(RestoreRefused) as e:
        plan_restore(REPO, HEALTHY, DBS, time=OLDEST - timedelta(seconds=1), into=None,
                     now=NOW)
    assert str(e.value) == (
        f"--time {format_time(OLDEST - timedelta(seconds=1))} is before the oldest point a "
        f"restore can reach, {format_time(OLDEST)} (the end of the oldest backup kept): "
        "choose a later time")


def test_nothing_to_restore_without_a_backup():
    empty = pgbackrest.Repository("ok", (), None, None)
    with pytest.raises(RestoreRefused, match="no backup yet: run `fab db.backup` first"):
        plan_restore(empty, HEALTHY, DBS, time=None, into=None, now=NOW)


def test_a_scratch_copy_on_the_live_primary_needs_force():
    with pytest.raises(RestoreRefused, match="db-1 runs the live primary"):
        plan_restore(REPO, HEALTHY, DBS, time=None, into="db-1", into_roles=("db",), now=NOW)
    plan = plan_restore(REPO, HEALTHY, DBS, time=None, into="db-1", into_roles=("db",),
                        force=True, now=NOW)
    assert (plan.target, plan.scratch) == ("db-1", True)


def test_a_scratch_copy_needs_the_database_image():
    with pytest.raises(RestoreRefused, match="needs a db or backup host"):
        plan_restore(REPO, HEALTHY, DBS, time=None, into="web-1", into_roles=("web",), now=NOW)


def test_both_db_hosts_lost_restores_the_first_and_clones_the_other():
    plan = plan_restore(REPO, BOTH_LOST, DBS, time=None, into=None, now=NOW)
    assert (plan.target, plan.stop, plan.fence, plan.clone, plan.overwrites) == (
        "db-1", (), (), ("db-2",), ())
    assert plan.steps() == [
        "restore to the end of the archived WAL into db-1's data directory",
        "start db-1 as the primary; replication slots and users again",
        "then `fab deploy.db` clones db-2 from it"]


def test_restoring_a_running_cluster_stops_both_and_fences_the_replica():
    when = OLDEST + timedelta(hours=1)
    plan = plan_restore(REPO, HEALTHY, DBS, time=when, into=None, now=NOW)
    assert (plan.target, plan.stop, plan.fence, plan.clone, plan.overwrites) == (
        "db-1", ("db-1", "db-2"), ("db-2",), (), ("db-1's data directory",))
    assert plan.steps()[1] == f"restore to {format_time(when)} into db-1's data directory"


def test_an_unreachable_db_host_stops_a_cluster_restore_unless_forced():
    topo = _topo(**{"db-1": {"container": "exited", "has_data": True},
                    "db-2": {"reachable": False}})
    with pytest.raises(RestoreRefused, match="db-2 cannot be reached"):
        plan_restore(REPO, topo, DBS, time=None, into=None, now=NOW)
    assert plan_restore(REPO, topo, DBS, time=None, into=None, force=True, now=NOW).fence == ()


def test_times_are_iso_8601_utc_unless_told_and_never_in_the_future():
    assert parse_time("2026-12-07T10:00:00") == datetime(2026, 12, 7, 10, tzinfo=UTC)
    assert format_time(parse_time("2026-12-07T11:00:00+01:00")) == \
        "2026-12-07 10:00:00.000000+00"
    with pytest.raises(RestoreRefused, match="is not a time"):
        parse_time("yesterday")
    with pytest.raises(RestoreRefused, match="is in the future"):
        plan_restore(REPO, HEALTHY, DBS, time=NOW + timedelta(minutes=1), into=None, now=NOW)


# --- commands and the drill's record -------------------------------------------------------------

def test_backup_types_are_checked_and_recorded():
    assert "--type=full backup" in pgbackrest.run_backup("full")
    assert 'echo "backup-full $start' in pgbackrest.run_backup("full")
    with pytest.raises(ValueError, match="unknown backup type 'weekly'"):
        pgbackrest.run_backup("weekly")


def test_restore_targets():
    assert pgbackrest.restore_target(None) == ["--type=default"]
    assert pgbackrest.restore_target("2026-12-07 10:00:00.000000+00") == [
        "--type=time", "--target=2026-12-07 10:00:00.000000+00", "--target-action=promote"]


def test_the_drill_record_reads_back():
    text = ("noise\ndrill primary db-1\ndrill point sentryfab-drill-x 1796637660\n"
            "drill restore_seconds 42\ndrill data_age_seconds 47\n"
            "drill primary_events 1 120\ndrill primary_events 2 30\n"
            "drill copy_events 1 120\ndrill copy_events 2 30\ndrill amcheck ok\n"
            "drill result ok\n")
    r = pgbackrest.parse_drill(text)
    assert (r.ok, r.primary, r.restore_seconds, r.data_age_seconds) == (True, "db-1", 42, 47)
    assert r.copy_events == r.primary_events == ((1, 120), (2, 30))
    failed = pgbackrest.parse_drill("drill problem restore failed\ndrill result failed\n")
    assert (failed.ok, failed.problem) == (False, "restore failed")
    assert not pgbackrest.parse_drill("").ok  # a drill cut off before its result failed


def test_a_bad_schedule_or_retention_is_refused_before_rendering(write_inventory):
    from sentryfab import secrets
    from sentryfab.configs import context, render
    from sentryfab.errors import RenderError

    text = INVENTORY.replace("cluster: t\n", "cluster: t\nroles:\n  backup: {backup_at: '25:00', "
                             "retention_full: 0, archive_timeout: 0}\n")
    inv = inventory.load(write_inventory(text))
    with pytest.raises(RenderError) as e:
        render.render_all(inv, inv.hosts, secrets.Secrets(secrets.generate(), "x"),
                          context.initial_state(inv))
    assert e.value.problems == [
        "hosts.yaml: roles/backup/backup_at: must be a time of day HH:MM (UTC), quoted, "
        "got '25:00'",
        "hosts.yaml: roles/backup/retention_full: must be a whole number 1-9999, got 0",
        "hosts.yaml: roles/backup/archive_timeout: must be a whole number 1-86400, got 0"]


# --- status ------------------------------------------------------------------------------------

def _backup_problems(now: float, record: str | None = None) -> tuple[list, str]:
    from sentryfab.status.checks import evaluate_host

    from .test_status_checks import DATA, answer, text

    lab = inventory.load(DATA.parent / "lab-hosts.yaml")
    out = text("backup-1") if record is None else record
    st, _ = evaluate_host(lab, lab.host("backup-1"), answer(out), None, now)
    return [(p.severity, p.message) for p in st.problems if p.scope == "backup"], st.notes[-1]


GOOD_END = 1796654234  # the last good (full) backup in the captured record


def test_backup_age_warns_after_26_hours_and_is_critical_after_50():
    assert _backup_problems(GOOD_END + 3600) == ([], "backups: last good full backup ended "
                                                     "1 h ago; drill: 1 h ago, ok, restored "
                                                     "in 6 s")
    assert _backup_problems(GOOD_END + 30 * 3600)[0] == [
        ("warning", "last good backup ended 30 h ago (warning > 26 h ago): run 'fab db.backup'")]
    assert _backup_problems(GOOD_END + 51 * 3600)[0] == [
        ("critical", "last good backup ended 51 h ago (critical > 50 h ago): run "
                     "'fab db.backup'"),
        ("warning", "last restore drill ran 51 h ago (warning > 50 h ago): run 'fab db.drill'")]


def test_a_failed_drill_is_critical():
    from .test_status_checks import text

    base = text("backup-1")
    head, _, rest = base.partition("@@ backup-record\n")
    record = "@@ backup-record\n" + rest.split("@@rc", 1)[0]
    failed = record + "drill 1796654600 1796654610 1\ndrill problem restore failed\n" \
        "drill result failed\n"
    out = head + failed + "@@rc" + rest.split("@@rc", 1)[1]
    problems, note = _backup_problems(GOOD_END + 3600, out)
    assert problems == [("critical", "last restore drill failed (1) or not (0) 1 (critical > "
                                     "0): see 'fab db.drill' and "
                                     "/var/lib/sentryfab/backup/runs/last-drill on backup-1")]
    assert note.endswith("drill: 1 h ago, FAILED (restore failed)")

"""Container specs per role and the docker commands built from them (exact strings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sentryfab import inventory
from sentryfab.containers import docker, releases
from sentryfab.containers.spec import specs_for
from sentryfab.errors import SentryfabError
from sentryfab.roles import ROLES

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ref():
    return inventory.load(REPO / "hosts.yaml")


def test_web_runs_one_container_per_process_each_on_its_own_port(ref):
    specs = specs_for(ref, ref.host("web-1"), "web", config_hash="abc")
    assert [(s.name, s.port) for s in specs] == [(f"sentry-web-{i}", 9000 + i - 1)
                                                 for i in range(1, 9)]
    assert specs[0].command == ("sentry", "--config", "/etc/sentryfab/web", "run", "web",
                                "--bind", "10.20.1.11:9000", "--workers", "1")
    assert docker.run(specs[0]) == (
        "docker run --detach --name sentry-web-1 --network host --restart unless-stopped "
        "--stop-timeout 30 --log-opt max-size=50m --log-opt max-file=3 "
        "--label sentryfab.role=web --label sentryfab.version=9.1.2 "
        "--label sentryfab.config=abc --label sentryfab.index=1 "
        "--volume /etc/sentryfab/web:/etc/sentryfab/web:ro "
        "--volume /srv/sentry-files:/var/lib/sentry/files "
        "sentry:9.1.2 sentry --config /etc/sentryfab/web run web "
        "--bind 10.20.1.11:9000 --workers 1"
    )


def test_worker_count_and_scaling(ref):
    assert len(specs_for(ref, ref.host("worker-1"), "worker")) == 4
    assert len(specs_for(ref, ref.host("worker-1"), "worker", count=6)) == 6


def test_db_has_its_data_volume_and_runs_as_postgres(ref):
    spec, agent = specs_for(ref, ref.host("db-1"), "db", version="15.5")
    image = "registry.example.net/ops/postgres-pgbackrest:15.5"
    assert docker.run(spec) == (
        "docker run --detach --name sentry-db-1 --network host --restart unless-stopped "
        "--stop-timeout 30 --log-opt max-size=50m --log-opt max-file=3 "
        "--label sentryfab.role=db --label sentryfab.version=15.5 --label sentryfab.config= "
        "--label sentryfab.index=1 --volume /etc/sentryfab/db:/etc/sentryfab/db:ro "
        "--volume /var/lib/sentryfab/db:/var/lib/sentryfab/db "
        "--volume /var/lib/sentryfab/db-socket:/var/run/postgresql --user postgres "
        f"--stop-signal SIGINT {image} "
        "postgres -D /var/lib/sentryfab/db/data -c config_file=/etc/sentryfab/db/postgresql.conf"
    )
    # With a backup host: pgBackRest's server beside it, sharing data and socket folders.
    assert docker.run(agent) == (
        "docker run --detach --name sentry-pgbackrest-1 --network host "
        "--restart unless-stopped --stop-timeout 30 --log-opt max-size=50m "
        "--log-opt max-file=3 --label sentryfab.role=db --label sentryfab.version=15.5 "
        "--label sentryfab.config= --label sentryfab.index=2 "
        "--volume /etc/sentryfab/db:/etc/sentryfab/db:ro "
        "--volume /var/lib/sentryfab/db:/var/lib/sentryfab/db "
        "--volume /var/lib/sentryfab/db-socket:/var/run/postgresql --user postgres "
        f"{image} pgbackrest --config=/etc/sentryfab/db/pgbackrest.conf server"
    )


def test_the_repository_host_runs_pgbackrest_s_server_as_postgres(ref):
    spec, schedule = specs_for(ref, ref.host("backup-1"), "backup")
    assert schedule.name == "sentry-backup-2" and schedule.command[:2] == ("sh", "-c")
    assert spec.command == ("pgbackrest", "--config=/etc/sentryfab/backup/pgbackrest.conf",
                            "server")
    assert spec.user == "postgres" and spec.name == "sentry-backup-1"
    assert spec.mounts == (("/etc/sentryfab/backup", "/etc/sentryfab/backup", True),
                           ("/var/lib/sentryfab/backup", "/var/lib/sentryfab/backup", False))


def test_nginx_command_keeps_its_quoted_argument(ref):
    [spec] = specs_for(ref, ref.host("lb-1"), "nginx")
    assert spec.command[-2:] == ("-g", "daemon off;")
    assert docker.run(spec).endswith("nginx -c /etc/sentryfab/nginx/nginx.conf -g 'daemon off;'")


def test_stop_remove_ps_are_tolerant_and_exact():
    assert docker.stop("sentry-web-1", 10) == \
        "docker stop --time 10 sentry-web-1 >/dev/null 2>&1; true"
    assert docker.remove("sentry-web-1") == "docker rm --force sentry-web-1 >/dev/null 2>&1; true"
    assert docker.ps("web").startswith(
        "docker ps --all --no-trunc --filter label=sentryfab.role=web --format ")


def test_image_pull_and_prune_commands():
    assert docker.ensure_image("lab/sentry:2") == (
        "docker image inspect --format '{{.Id}}' lab/sentry:2 >/dev/null 2>&1 || "
        "docker pull --quiet lab/sentry:2")
    assert docker.prune_images("lab/sentry", 3) == (
        "docker images lab/sentry --format '{{.CreatedAt}}\t{{.Repository}}:{{.Tag}}' "
        "| sort -r | tail -n +4 | cut -f 2 | grep -v ':<none>$' "
        "| xargs -r docker rmi >/dev/null 2>&1; true")


def test_the_health_gate_gives_up_at_once_on_a_crashed_container(ref):
    from sentryfab.containers import health

    host = ref.host("web-1")
    specs = specs_for(ref, host, "web")
    hc = health.check(ref, host, "web", specs)
    assert hc.crashed == (
        "docker inspect --format '{{.RestartCount}} {{.State.Status}}' sentry-web-1 "
        "sentry-web-2 sentry-web-3 sentry-web-4 sentry-web-5 sentry-web-6 sentry-web-7 "
        "sentry-web-8 2>/dev/null | grep -qv '^0 running$'")
    script = health.until_healthy(health.HealthCheck("true", "x", None, "crashed"), 10)
    assert script == (
        "SECRET=; sleep 3; i=0; while [ $i -lt 10 ]; do if printf %s \"$SECRET\" | "
        "{ true; } >/dev/null 2>&1; then exit 0; fi; if crashed; then exit 3; fi; "
        "i=$((i+1)); sleep 1; done; exit 1")
    assert health.failure(3, hc, 120) == (
        "a new container crashed (restarted or exited) before it was healthy")
    assert health.failure(1, hc, 120) == (
        "not healthy within 120 s (/_health/ answers 200 on 8 web process(es))")


def test_sentry_containers_mount_the_filestore_and_prepare_it_for_their_user(ref):
    from sentryfab.containers.spec import prepare_dirs

    host = ref.host("worker-1")
    spec = specs_for(ref, host, "cron")[0]
    assert spec.mounts == (("/etc/sentryfab/cron", "/etc/sentryfab/cron", True),
                           ("/srv/sentry-files", "/var/lib/sentry/files", False))
    assert prepare_dirs(ref, host, "worker") == (
        "mkdir -p /etc/sentryfab/worker && chmod 755 /etc/sentryfab/worker && "
        "mkdir -p /srv/sentry-files && { [ \"$(stat -c %u /srv/sentry-files)\" = 999 ] || "
        "chown 999 /srv/sentry-files; }")
    # Redis and the others have no files of Sentry's.
    assert [m[1] for m in specs_for(ref, ref.host("redis-cache-1"), "redis-cache")[0].mounts] \
        == ["/etc/sentryfab/redis-cache", "/var/lib/sentryfab/redis-cache"]


def test_standby_settings_quote_a_nasty_replication_password_for_libpq_then_the_file():
    from sentryfab.containers import postgres

    assert postgres.standby_lines("10.0.0.1", 5432, "db-2", "pa'ss\\ w") == (
        "primary_conninfo = 'host=10.0.0.1 port=5432 user=replicator application_name=db-2 "
        "password=''pa\\\\''ss\\\\\\\\ w'''\n"
        "primary_slot_name = 'db_2'\n")
    assert postgres.replica_stdin("h", 1, "db-2", "pw").startswith(b"pw\nprimary_conninfo = ")
    with pytest.raises(SentryfabError, match="line break"):
        postgres.replica_stdin("h", 1, "db-2", "a\nb")


@pytest.mark.parametrize("role", ROLES)
def test_release_history_commands_are_the_strings_deploy_sent_before(role):
    # procedures/deploy.py built them in place before they moved to containers/releases.py.
    old_record = (f"mkdir -p /var/lib/sentryfab/releases && printf '%s %s\\n' "
                  f"20260101T000000.000000Z 9.1.2 >> /var/lib/sentryfab/releases/{role}")
    assert releases.record_command(role, "9.1.2", "20260101T000000.000000Z") == old_record
    assert releases.last_two_command(role) == \
        f"tail -n 2 /var/lib/sentryfab/releases/{role} 2>/dev/null; true"

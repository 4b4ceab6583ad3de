"""Rendering: golden files of every template, errors that say where, masking, check commands.

Golden files are compared byte for byte. After a deliberate template change, rewrite them
with `UPDATE_GOLDEN=1 pytest tests/unit/test_render.py` and review `git diff tests/unit/golden`.
Secrets come from tests/unit/data/fake-secrets.yaml (obviously fake values), never from the
inventories' own `secrets:` files.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
from pathlib import Path

import pytest
import yaml

from sentryfab import inventory, secrets
from sentryfab.configs import render, validate
from sentryfab.configs.context import ClusterState, initial_state
from sentryfab.configs.render import RenderError, render_all
from sentryfab.lab import topology

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
GOLDEN = HERE / "golden"
LAB = DATA / "lab-hosts.yaml"
REFERENCE = HERE.parents[1] / "hosts.yaml"
FAKE_SECRETS = DATA / "fake-secrets.yaml"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"

#: One host per role of the reference deployment.
REFERENCE_HOSTS = ("web-1", "worker-1", "cron-1", "lb-1", "pgbouncer-1", "redis-cache-1",
                   "redis-queue-1", "db-1", "backup-1")
SETS = {"lab": LAB, "reference": REFERENCE}


def _golden_hosts() -> dict[str, list[str]]:
    lab = inventory.load(LAB)
    return {"lab": [h.name for h in lab.hosts if h.roles], "reference": list(REFERENCE_HOSTS)}


GOLDEN_HOSTS = _golden_hosts()
CASES = [(name, host) for name, hosts in GOLDEN_HOSTS.items() for host in hosts]


def load_secrets(tmp: Path, values: dict[str, str] | None = None) -> secrets.Secrets:
    """Fake secrets from a 0600 copy (git keeps no modes, and load() refuses others)."""
    path = tmp / "secrets.yaml"
    if values is None:
        shutil.copyfile(FAKE_SECRETS, path)
    else:
        path.write_text(yaml.safe_dump(values))
    path.chmod(0o600)
    return secrets.load(path, environ={})


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> secrets.Secrets:
    return load_secrets(tmp_path_factory.mktemp("secrets"))


@functools.cache
def _load(path: Path, content: bytes) -> inventory.Inventory:
    return inventory.load(path)


def load_inventory(path: Path) -> inventory.Inventory:
    """inventory.load(path), parsed once per path and content: many tests render the same few
    files host by host (an Inventory is frozen, and nothing here changes one)."""
    return _load(path, path.read_bytes())


def render_host(path: Path, host: str, sec: secrets.Secrets,
                state: ClusterState | None = None) -> dict[str, str]:
    """'role/file' -> rendered text for one host."""
    inv = load_inventory(path)
    files = render_all(inv, [inv.host(host)], sec, state or initial_state(inv))[host]
    return {f"{f.role}/{f.file.name}": f.content for f in files}


# --- golden files ---------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "host"), CASES, ids=[f"{n}/{h}" for n, h in CASES])
def test_render_matches_golden_files(name, host, fake):
    rendered = render_host(SETS[name], host, fake)
    folder = GOLDEN / name / host
    if UPDATE:
        shutil.rmtree(folder, ignore_errors=True)
        for rel, text in rendered.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(text.encode())
        return
    on_disk = {p.relative_to(folder).as_posix(): p.read_bytes()
               for p in folder.rglob("*") if p.is_file()}
    assert sorted(on_disk) == sorted(rendered), \
        f"golden files of {name}/{host} differ in names: run UPDATE_GOLDEN=1 and review"
    for rel, text in rendered.items():
        assert text.encode() == on_disk[rel], \
            f"{name}/{host}/{rel} differs from its golden file: run UPDATE_GOLDEN=1 and review"


def test_no_stale_golden_hosts():
    if UPDATE:
        for name, hosts in GOLDEN_HOSTS.items():
            for d in (GOLDEN / name).iterdir():
                if d.name not in hosts:
                    shutil.rmtree(d)
    found = {name: sorted(d.name for d in (GOLDEN / name).iterdir()) for name in GOLDEN_HOSTS}
    assert found == {name: sorted(hosts) for name, hosts in GOLDEN_HOSTS.items()}


def test_lab_inventory_copy_matches_the_generated_one():
    # A fixed copy keeps the goldens stable; this says when the lab moved on without them.
    assert LAB.read_text() == topology.inventory_yaml(topology.role_hosts()), \
        "the lab inventory changed: copy it to tests/unit/data/lab-hosts.yaml, UPDATE_GOLDEN=1"


def test_rendering_is_deterministic(tmp_path):
    a = render_host(REFERENCE, "pgbouncer-1", load_secrets(tmp_path))
    b = render_host(REFERENCE, "pgbouncer-1", load_secrets(tmp_path))
    assert a == b


# --- contracts other parts of sentryfab rely on ---------------------------------------------

def test_userlist_holds_the_verifier_the_db_bootstrap_sets(fake):
    # SCRAM passthrough works only if PostgreSQL stores this very verifier for 'sentry'.
    userlist = render_host(REFERENCE, "pgbouncer-1", fake)["pgbouncer/userlist.txt"]
    verifier = render.scram_sha256("fake-db-password", "sentry")
    assert f'"sentry" "{verifier}"\n' in userlist
    assert "fake-db-password" not in userlist and "fake-pgbouncer-admin-password" not in userlist


def test_pgbouncer_points_at_the_current_primary(fake):
    ini = render_host(REFERENCE, "pgbouncer-1", fake, ClusterState(primary="db-2"))
    assert "\nsentry = host=10.20.4.12 port=5432 dbname=sentry\n" in ini["pgbouncer/pgbouncer.ini"]


def test_synchronous_standbys_are_the_other_db_hosts(fake, write_inventory):
    text = REFERENCE.read_text().replace("    max_connections: 400\n",
                                         "    max_connections: 400\n    synchronous: true\n")
    path = write_inventory(text)
    for host, other in (("db-1", "db-2"), ("db-2", "db-1")):
        conf = render_host(path, host, fake)["db/postgresql.conf"]
        assert f"\nsynchronous_standby_names = 'ANY 1 (\"{other}\")'\n" in conf


def test_nginx_spreads_consecutive_upstreams_over_hosts(fake):
    conf = render_host(REFERENCE, "lb-1", fake)["nginx/nginx.conf"]
    servers = [line.split()[1] for line in conf.splitlines() if line.startswith("        server ")]
    assert len(servers) == 30 * 8
    # Port by port across hosts: a retry after a dead process goes to another host.
    assert servers[:3] == ["10.20.1.11:9000", "10.20.1.12:9000", "10.20.1.13:9000"]
    assert servers[29:31] == ["10.20.1.40:9000", "10.20.1.11:9001"]
    assert len(set(servers)) == len(servers)


# --- errors say where and what to do --------------------------------------------------------

def test_missing_variable_names_template_line_and_variable(tmp_path, fake):
    (tmp_path / "nginx").mkdir()
    (tmp_path / "nginx" / "nginx.conf").write_text(
        "# header\nworker_processes {{ s.worker_processes }};\nlisten {{ listen_port }};\n")
    inv = inventory.load(LAB)
    with pytest.raises(RenderError) as e:
        render_all(inv, [inv.host("nginx-1")], fake, initial_state(inv), templates=tmp_path)
    assert e.value.problems == ["nginx-1: templates/nginx/nginx.conf:3: 'listen_port' is undefined"]


def test_missing_secret_names_it_and_where_to_set_it(tmp_path):
    values = yaml.safe_load(FAKE_SECRETS.read_text())
    del values["db_password"]
    sec = load_secrets(tmp_path, values)
    inv = inventory.load(LAB)
    with pytest.raises(RenderError) as e:
        render_all(inv, [inv.host("pgbouncer-1")], sec, initial_state(inv))
    assert e.value.problems == [
        "pgbouncer-1: pgbouncer/userlist.txt: secret 'db_password' is missing (password of "
        "the 'sentry' database user (Sentry -> PgBouncer -> PostgreSQL)): add it to "
        f"{tmp_path / 'secrets.yaml'} or set SENTRYFAB_SECRET_DB_PASSWORD"]


# --- masking --------------------------------------------------------------------------------

CANARIES = {name: f"canary-{name.replace('_', '-')}-7f3a9c"
            for name in (*secrets.REQUIRED, "redis_password")}


def test_masked_renders_show_no_secret_nor_anything_derived_from_one(tmp_path):
    sec = load_secrets(tmp_path, CANARIES)
    texts: list[str] = []
    for path, hosts in ((LAB, GOLDEN_HOSTS["lab"]), (REFERENCE, REFERENCE_HOSTS)):
        for host in hosts:
            texts += render_host(path, host, sec).values()
    verifiers = [render.scram_sha256(CANARIES["db_password"], "sentry"),
                 render.scram_sha256(CANARIES["pgbouncer_admin_password"], "pgbouncer")]
    # The keys inside a verifier are secret-equivalent for SCRAM: none may show either.
    parts = [p for v in verifiers for p in v.split("$")[2].split(":")]
    used = ("sentry_secret_key", "db_password", "redis_password")
    plain = "\n".join(texts)
    assert all(CANARIES[n] in plain for n in used) and all(v in plain for v in verifiers)
    masked = "\n".join(sec.mask(t) for t in texts)
    leaks = [v for v in (*CANARIES.values(), *verifiers, *parts) if v in masked]
    assert leaks == []
    assert secrets.MASK in masked


def test_md5_derived_values_are_masked_too(tmp_path):
    (tmp_path / "pgbouncer").mkdir()
    (tmp_path / "pgbouncer" / "pgbouncer.ini").write_text("[pgbouncer]\n")
    (tmp_path / "pgbouncer" / "userlist.txt").write_text(
        '"sentry" "{{ secret(\'db_password\') | md5_auth(\'sentry\') }}"\n')
    sec = load_secrets(tmp_path, CANARIES)
    inv = inventory.load(LAB)
    files = render_all(inv, [inv.host("pgbouncer-1")], sec, initial_state(inv),
                       templates=tmp_path)["pgbouncer-1"]
    text = next(f.content for f in files if f.file.name == "userlist.txt")
    md5 = render.md5_auth(CANARIES["db_password"], "sentry")
    assert text == f'"sentry" "{md5}"\n'
    assert sec.mask(text) == '"sentry" "********"\n'


# --- validation commands --------------------------------------------------------------------

STAYS_UP = ('; rc=$?; [ "$rc" -eq 124 ] && exit 0; '
            'printf "%s\\nexited with code %s within 2 s\\n" "$out" "$rc" >&2; exit 1')
PG_PATH = "for d in /usr/lib/postgresql/*/bin; do PATH=$PATH:$d; done; "


def test_nginx_check_command():
    assert validate.validation_command(
        "nginx", "nginx", "/etc/sentryfab/nginx/.nginx.conf.new", "nginx:1.25") == (
        "docker run --rm --network=none --entrypoint= --sysctl net.ipv4.ip_nonlocal_bind=1 "
        "-v /etc/sentryfab/nginx:/etc/sentryfab/nginx:ro nginx:1.25 "
        "nginx -t -e stderr -g 'pid /tmp/nginx.pid;' -c /etc/sentryfab/nginx/.nginx.conf.new")


@pytest.mark.parametrize("role", ["redis-cache", "redis-queue"])
def test_redis_check_command(role):
    assert validate.validation_command(
        "redis", role, f"/etc/sentryfab/{role}/.redis.conf.new", "redis:7.2") == (
        f"docker run --rm --network=none --entrypoint= "
        f"-v /etc/sentryfab/{role}:/etc/sentryfab/{role}:ro redis:7.2 "
        "sh -c " + shlex.quote(
            'mkdir -p "$2" && out=$(timeout 2 redis-server "$1" --port 0 '
            '--unixsocket /tmp/redis.sock --daemonize no --dir /tmp --save "" '
            '--appendonly no 2>&1)' + STAYS_UP) +
        f" sh /etc/sentryfab/{role}/.redis.conf.new /var/lib/sentryfab/{role}")


def test_pgbouncer_check_command():
    assert validate.validation_command(
        "pgbouncer", "pgbouncer", "/etc/sentryfab/pgbouncer/.pgbouncer.ini.new",
        "edoburu/pgbouncer:1.22.1") == (
        "docker run --rm --network=none --entrypoint= --user postgres "
        "-v /etc/sentryfab/pgbouncer:/etc/sentryfab/pgbouncer:ro edoburu/pgbouncer:1.22.1 "
        "sh -c " + shlex.quote(
            'cp "$1" /tmp/pgbouncer.ini && sed -i '
            '-e "s/^[[:space:]]*listen_addr[[:space:]]*=.*/listen_addr = 127.0.0.1/" '
            '-e "s/^[[:space:]]*listen_port[[:space:]]*=.*/listen_port = 6432/" '
            "/tmp/pgbouncer.ini && out=$(timeout 2 pgbouncer /tmp/pgbouncer.ini 2>&1)"
            + STAYS_UP) +
        " sh /etc/sentryfab/pgbouncer/.pgbouncer.ini.new")


def test_postgres_check_command():
    assert validate.validation_command(
        "postgres", "db", "/etc/sentryfab/db/.postgresql.conf.new", "postgres:15") == (
        "docker run --rm --network=none --entrypoint= --user postgres "
        "-v /etc/sentryfab/db:/etc/sentryfab/db:ro postgres:15 "
        "sh -c " + shlex.quote(
            PG_PATH + 'data=$(mktemp -d) && '
            'postgres -C wal_level -c config_file="$1" -D "$data"') +
        " sh /etc/sentryfab/db/.postgresql.conf.new")


def test_pg_hba_check_command():
    assert validate.validation_command(
        "pg_hba", "db", "/etc/sentryfab/db/.pg_hba.conf.new", "postgres:15") == (
        "docker run --rm --network=none --entrypoint= --user postgres "
        "-v /etc/sentryfab/db:/etc/sentryfab/db:ro postgres:15 "
        "sh -c " + shlex.quote(
            PG_PATH + 'data=$(mktemp -d) && initdb --no-sync --no-instructions -A trust '
            '-U postgres -E UTF8 --locale=C -D "$data" >/dev/null && '
            'out=$(timeout 2 postgres -D "$data" -c hba_file="$1" -c listen_addresses= '
            '-c unix_socket_directories="$data" 2>&1)' + STAYS_UP) +
        " sh /etc/sentryfab/db/.pg_hba.conf.new")


@pytest.mark.parametrize("role", ["web", "worker", "cron"])
def test_sentry_check_commands(role):
    # Run by the image's own Python: Sentry 9's 2.7 where there is one.
    folder = f"/etc/sentryfab/{role}"
    head = (f"docker run --rm --network=none --entrypoint= -v {folder}:{folder}:ro "
            "sentry:9.1.2 sh -c " + shlex.quote(
                'py=$(command -v python2.7 || command -v python || command -v python3) || '
                '{ echo "no python in the image" >&2; exit 1; }; '
                'script=$1; shift; exec "$py" -c "$script" "$@"') + " sh ")
    assert validate.validation_command(
        "python", role, f"{folder}/.sentry.conf.py.new", "sentry:9.1.2") == (
        head + shlex.quote(validate.SENTRY_CONF_CHECK) +
        f" {folder}/.sentry.conf.py.new DATABASES BROKER_URL SENTRY_WEB_OPTIONS")
    assert validate.validation_command(
        "yaml", role, f"{folder}/.config.yml.new", "sentry:9.1.2") == (
        head + shlex.quote(validate.YAML_CHECK) +
        f" {folder}/.config.yml.new system.secret-key redis.clusters")


def test_no_check_and_misuse():
    assert validate.validation_command(
        "none", "pgbouncer", "/etc/sentryfab/pgbouncer/.userlist.txt.new", "x:1") is None
    with pytest.raises(ValueError, match="unknown validator 'toml'"):
        validate.validation_command("toml", "web", "/etc/sentryfab/web/.x.new", "x:1")
    with pytest.raises(ValueError, match="not in /etc/sentryfab/web/"):
        validate.validation_command("yaml", "web", "/tmp/.config.yml.new", "x:1")


def test_every_catalog_validator_has_a_check():
    from sentryfab.configs.catalog import ROLE_FILES
    assert {f.validator for files in ROLE_FILES.values() for f in files} <= set(validate.VALIDATORS)


def test_drained_web_processes_are_marked_down_in_nginx(fake):
    from sentryfab.configs.context import initial_state
    from sentryfab.configs.render import render_all

    inv = inventory.load(REFERENCE)
    drained = frozenset({"10.20.1.11:9000", "10.20.1.11:9001"})
    [f] = render_all(inv, [inv.host("lb-1")], fake, initial_state(inv), drained=drained)["lb-1"]
    down = [line.strip() for line in f.content.splitlines() if " down;" in line]
    assert down == [
        "server 10.20.1.11:9000 max_fails=2 fail_timeout=10s down;  # web-1 (drained for a deploy)",
        "server 10.20.1.11:9001 max_fails=2 fail_timeout=10s down;  # web-1 (drained for a deploy)",
    ]


# --- what a container's config label records ------------------------------------------------

def _digest(path: Path, host: str, sec, state: ClusterState | None = None) -> str:
    from sentryfab.configs.apply import config_digest

    inv = load_inventory(path)
    files = render_all(inv, [inv.host(host)], sec, state or initial_state(inv))[host]
    return config_digest((f.file, f.content) for f in files)


def test_config_label_ignores_what_a_reload_applies(fake):
    """A failover moves the primary and degrades replication: PgBouncer and PostgreSQL
    files change, and a reload applies all of it, so deploy must not restart them after."""
    for host in ("pgbouncer-1", "db-1", "db-2"):
        assert _digest(LAB, host, fake) == _digest(
            LAB, host, fake, ClusterState(primary="db-2", degraded=True)), host
    before = render_host(LAB, "db-1", fake)["db/postgresql.conf"]
    after = render_host(LAB, "db-1", fake, ClusterState("db-1", degraded=True))
    assert before != after["db/postgresql.conf"]  # the file itself did change


def test_config_label_follows_start_only_settings(fake, write_inventory):
    text = LAB.read_text()
    role = "  db: {image: lab/base, tag: '1', synchronous: true"
    assert role in text

    def db_vars(extra: str) -> Path:
        return write_inventory(text.replace(role, role + ", " + extra), name=f"{extra[:9]}.yaml")

    assert _digest(LAB, "db-1", fake) != _digest(db_vars("shared_buffers: 512MB"), "db-1", fake)
    assert _digest(LAB, "db-1", fake) == _digest(db_vars("work_mem: 8MB"), "db-1", fake)


def test_start_only_part_of_postgresql_conf():
    from sentryfab.configs.apply import start_only
    from sentryfab.configs.catalog import ROLE_FILES

    pg = ROLE_FILES["db"][0]
    conf = ("port = 5432\nwork_mem = 4MB  # per sort\nshared_buffers = 128MB\n"
            "# shared_buffers = 1GB\nsynchronous_standby_names = ''\nshared_buffers=256MB\n")
    assert start_only(pg, conf) == "port=5432\nshared_buffers=256MB\n"
    nginx = ROLE_FILES["nginx"][0]
    assert start_only(nginx, "worker_processes 4;\n") == ""
    sentry = ROLE_FILES["web"][0]
    assert start_only(sentry, "X = 1\n") == "X = 1\n"

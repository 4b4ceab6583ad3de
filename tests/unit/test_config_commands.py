"""The push protocol's remote commands (exact strings) and the parser of their output."""

from __future__ import annotations

from sentryfab.configs import apply, commands
from sentryfab.procedures.configs import changed_files, mask
from sentryfab.secrets import Secrets

P = "/etc/sentryfab/nginx/nginx.conf"


def test_candidate_sits_beside_the_live_file():
    assert commands.candidate_path(P) == "/etc/sentryfab/nginx/.nginx.conf.new"


def test_checksums_command_and_parser():
    assert commands.checksums([P, "/etc/sentryfab/db/pg_hba.conf"]) == (
        "sha256sum -- /etc/sentryfab/nginx/nginx.conf /etc/sentryfab/db/pg_hba.conf "
        "2>/dev/null; for f in /etc/sentryfab/nginx/nginx.conf /etc/sentryfab/db/pg_hba.conf; "
        "do [ -e \"$f\" ] && [ ! -r \"$f\" ] && echo \"$f: Permission denied\" >&2; done; "
        "echo --sentryfab-pending--; "
        "for f in /var/lib/sentryfab/pending/*; do [ -f \"$f\" ] && echo \"${f##*/}\"; done; true"
    )
    out = (f"{'a' * 64}  {P}\n{'b' * 64}  /etc/sentryfab/db/pg_hba.conf\n"
           "--sentryfab-pending--\nnginx\ndb\n")
    facts = commands.parse_checksums(out)
    assert facts.sums == {P: "a" * 64, "/etc/sentryfab/db/pg_hba.conf": "b" * 64}
    assert facts.pending == frozenset({"nginx", "db"})
    assert commands.parse_checksums("--sentryfab-pending--\n").sums == {}


def test_upload_is_private_from_the_first_byte_then_owned_and_synced():
    assert commands.upload("/etc/sentryfab/pgbouncer/userlist.txt", 0o600, 101) == (
        "mkdir -p /etc/sentryfab/pgbouncer && chmod 755 /etc/sentryfab/pgbouncer && umask 077 && "
        "cat > /etc/sentryfab/pgbouncer/.userlist.txt.new && "
        "chown 101 /etc/sentryfab/pgbouncer/.userlist.txt.new && "
        "chmod 600 /etc/sentryfab/pgbouncer/.userlist.txt.new && "
        "sync /etc/sentryfab/pgbouncer/.userlist.txt.new"
    )


def test_activate_keeps_history_renames_and_prunes():
    assert commands.activate(P, "20261127T010203.000001Z") == (
        "mkdir -p /etc/sentryfab/nginx/.history && chmod 700 /etc/sentryfab/nginx/.history && "
        "{ [ ! -e /etc/sentryfab/nginx/nginx.conf ] || cp -p /etc/sentryfab/nginx/nginx.conf "
        "/etc/sentryfab/nginx/.history/nginx.conf.20261127T010203.000001Z; } && "
        "mv -f /etc/sentryfab/nginx/.nginx.conf.new /etc/sentryfab/nginx/nginx.conf && "
        "sync /etc/sentryfab/nginx && { ls -1 /etc/sentryfab/nginx/.history | grep -F "
        "nginx.conf. | sort -r | tail -n +6 | while read -r old; do "
        "rm -f /etc/sentryfab/nginx/.history/\"$old\"; done; true; }"
    )


def test_pending_marker_is_written_atomically_before_files_change():
    assert commands.mark_pending("nginx", [P]) == (
        "mkdir -p /var/lib/sentryfab/pending && printf '%s\\n' /etc/sentryfab/nginx/nginx.conf "
        "> /var/lib/sentryfab/pending/nginx.tmp && "
        "mv -f /var/lib/sentryfab/pending/nginx.tmp /var/lib/sentryfab/pending/nginx"
    )
    assert commands.clear_pending("nginx") == "rm -f /var/lib/sentryfab/pending/nginx"


def test_reload_signals_every_running_container_of_the_role():
    assert apply.reload_command("pgbouncer") == (
        "for c in $(docker ps -q --filter label=sentryfab.role=pgbouncer); "
        "do docker kill --signal HUP \"$c\" >/dev/null || exit 1; done"
    )
    assert apply.needs_restart("web") and apply.needs_restart("redis-queue")
    assert not apply.needs_restart("nginx") and not apply.needs_restart("db")


def test_changed_files_compares_checksums():
    class F:  # the two attributes changed_files reads
        def __init__(self, path, sha256):
            self.path, self.sha256 = path, sha256

    same, other, missing = F("/a", "1" * 64), F("/b", "2" * 64), F("/c", "3" * 64)
    facts = commands.HostFacts({"/a": "1" * 64, "/b": "9" * 64}, frozenset())
    assert changed_files([same, other, missing], facts) == [other, missing]


def test_mask_blanks_known_values_and_credential_shapes_in_secret_files():
    s = Secrets({"db_password": "hunter2-but-longer"}, "test")
    derived = s.register("SCRAM-SHA-256$4096:abc$def:ghi")
    assert mask(s, "password=hunter2-but-longer", False) == "password=********"
    assert mask(s, f'"sentry" "{derived}"', True) == '"sentry" "********"'
    # An old, rotated value we never knew is still blanked in a secret file by its shape.
    assert mask(s, "secret-key: 'Zm9vYmFyYmF6cXV4cXV1eHh5eno'", True) == "secret-key: ********"
    assert mask(s, "listen_port = 6432", True) == "listen_port = 6432"
    # ...and every value of a secret key, whatever its shape (issue 13: `Old#Pass!2023`).
    old = ('requirepass "Old#Pass!2023"\nmail.password: "Old#Pass!2023"\n'
           '    "PASSWORD": "Old#Pass!2023",\nBROKER_URL = "redis://:Old#Pass@10.0.0.1:6379/0"\n'
           "SENTRY_OPTIONS['system.secret-key'] = 'Old#Pass'\nauth_type = scram-sha-256\n"
           "port 6379\n")
    assert mask(s, old, True) == (
        'requirepass ********\nmail.password: ********\n    "PASSWORD": ********,\n'
        'BROKER_URL = "redis://:********@10.0.0.1:6379/0"\n'
        "SENTRY_OPTIONS['system.secret-key'] = ********\nauth_type = scram-sha-256\n"
        "port 6379\n")
    assert "Old#Pass" in mask(s, old, False)  # only secret files are masked by key

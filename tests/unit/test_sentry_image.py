"""The real Sentry image's recipe: cache keys, build commands, import options, entrypoint."""

from __future__ import annotations

from pathlib import Path

from sentryfab.lab import sentry_image as si
from sentryfab.lab.topology import role_hosts, scale_hosts

MIRROR = "http://deb.debian.org/debian"


def test_cache_key_is_stable_short_hex():
    key = si.cache_key("9.1.2", MIRROR)
    assert key == si.cache_key("9.1.2", MIRROR)
    assert len(key) == 12 and int(key, 16) >= 0


def test_cache_key_changes_with_each_input():
    base = si.cache_key("9.1.2", MIRROR)
    changed = [
        si.cache_key("9.1.1", MIRROR),
        si.cache_key("9.1.2", "http://mirror.example/debian"),
        si.cache_key("9.1.2", MIRROR, suite="bookworm"),
        si.cache_key("9.1.2", MIRROR, packages=(*si.PACKAGES, "git")),
        si.cache_key("9.1.2", MIRROR, packages=si.PACKAGES[1:]),
        si.cache_key("9.1.2", MIRROR, recipe=si.RECIPE + "x"),
    ]
    assert base not in changed
    assert len(set(changed)) == len(changed)


def test_cache_key_ignores_package_order():
    assert si.cache_key("9.1.2", MIRROR, packages=reversed(si.PACKAGES)) == si.cache_key(
        "9.1.2", MIRROR)


def test_current_keys_one_per_version():
    keys = si.current_keys(MIRROR)
    assert list(keys) == ["9.1.2", "9.1.1"]
    assert keys["9.1.1"] == si.cache_key("9.1.1", MIRROR) != keys["9.1.2"]


def test_tar_name_and_ref():
    assert si.tar_name("9.1.1", "0123456789ab") == "sentry-9.1.1-0123456789ab.tar"
    assert si.image_ref("9.1.2") == "lab/sentry:9.1.2"
    tar = si.SentryImage("9.1.1", Path("/c/sentry-9.1.1-k.tar"), "k", False, 0.0)
    assert tar.ref == "lab/sentry:9.1.1"


def test_debootstrap_argv():
    assert si.debootstrap_argv(Path("/c/build"), MIRROR) == [
        "debootstrap", "--variant=minbase",
        "--include=python2.7,python2.7-dev,gcc,g++,make,libpq-dev,libxml2-dev,libxslt1-dev,"
        "libffi-dev,libssl-dev,libjpeg-dev,zlib1g-dev,ca-certificates,tini,gosu,curl",
        "bullseye", "/c/build", MIRROR]


def test_build_only_packages_are_all_purged_and_runtime_ones_kept():
    assert set(si.BUILD_ONLY) <= set(si.PACKAGES)
    assert not set(si.BUILD_ONLY) & set(si.RUNTIME)
    assert set(si.PACKAGES) - set(si.BUILD_ONLY) <= set(si.RUNTIME)


def test_pip_download_argv():
    assert si.pip_download_argv(Path("/c/build/tmp/sentryfab-pip"), "/v/bin/python") == [
        "/v/bin/python", "-m", "pip", "download", "--no-deps", "--python-version", "2.7",
        "--only-binary=:all:", "-d", "/c/build/tmp/sentryfab-pip", "pip==20.3.4"]


def test_chroot_argv():
    assert si.chroot_argv(Path("/c/build"), "true") == [
        "chroot", "/c/build", "/bin/sh", "-ec", "true"]


def test_user_script():
    assert si.user_script() == (
        "getent group sentry >/dev/null || groupadd --system --gid 999 sentry\n"
        "id -u sentry >/dev/null 2>&1 || useradd --system --create-home --uid 999 "
        "--gid sentry --shell /bin/bash sentry\n"
        "mkdir -p /etc/sentry /var/lib/sentry/files\n"
        "chown sentry:sentry /etc/sentry /var/lib/sentry /var/lib/sentry/files\n"
        "chmod 0755 /entrypoint.sh")


def test_install_scripts():
    assert si.install_script("9.1.2") == (
        "python2.7 /tmp/sentryfab-pip/pip-20.3.4-py2.py3-none-any.whl/pip install "
        "--no-cache-dir pip==20.3.4 setuptools==44.1.1 wheel==0.37.1\n"
        "python2.7 -m pip install --no-cache-dir virtualenv==20.15.1\n"
        "python2.7 -m virtualenv --no-periodic-update /opt/sentry\n"
        "/opt/sentry/bin/pip install --no-cache-dir sentry==9.1.2")
    assert si.sentry_install_script("9.1.1") == (
        "/opt/sentry/bin/pip install --no-cache-dir sentry==9.1.1")


def test_purge_script():
    assert si.purge_script() == (
        "dpkg-query -W -f '${Package} ${Priority} ${Essential}\\n' "
        "| awk '$2 != \"required\" && $2 != \"important\" && $3 != \"yes\" {print $1}' "
        "| xargs -r apt-mark auto >/dev/null\n"
        "apt-mark manual python2.7 libpython2.7 libpq5 libxml2 libxslt1.1 libffi7 libssl1.1 "
        "libjpeg62-turbo zlib1g ca-certificates tini gosu curl >/dev/null\n"
        "apt-get purge -y --auto-remove -o APT::AutoRemove::SuggestsImportant=false "
        "python2.7-dev gcc g++ make libpq-dev libxml2-dev "
        "libxslt1-dev libffi-dev libssl-dev libjpeg-dev zlib1g-dev\n"
        "apt-get clean")


def test_ldd_script():
    assert si.ldd_script() == (
        "find /opt/sentry -type f \\( -name '*.so' -o -path '*/bin/uwsgi' \\) "
        "! -path '*/.libs/*' -exec ldd {} + 2>&1 || true")


def test_missing_libraries():
    output = (
        "/opt/sentry/bin/uwsgi:\n"
        "\tlinux-vdso.so.1 (0x00007ffd)\n"
        "\tlibpython2.7.so.1.0 => not found\n"
        "\tlibxml2.so.2 => /lib/x86_64-linux-gnu/libxml2.so.2 (0x00007f)\n"
        "/opt/sentry/lib/python2.7/site-packages/_cffi_backend.so:\n"
        "\tlibffi.so.7 => not found\n"
        "/opt/sentry/lib/python2.7/site-packages/mmh3.so:\n"
        "\tlibstdc++.so.6 => /lib/x86_64-linux-gnu/libstdc++.so.6 (0x00007f)\n"
    )
    assert si.missing_libraries(output) == [
        "/opt/sentry/bin/uwsgi: libpython2.7.so.1.0",
        "/opt/sentry/lib/python2.7/site-packages/_cffi_backend.so: libffi.so.7"]
    assert si.missing_libraries("") == []


def test_parse_version():
    assert si.parse_version("sentry, version 9.1.2\n") == "9.1.2"
    assert si.parse_version("Traceback (most recent call last):\n") is None


def test_import_changes_give_the_official_shape():
    assert si.import_changes("0123456789ab") == [
        "ENV PATH=/opt/sentry/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "ENV LANG=C.UTF-8",
        "ENV SENTRY_CONF=/etc/sentry",
        "ENV SENTRY_FILESTORE_DIR=/var/lib/sentry/files",
        "EXPOSE 9000",
        'ENTRYPOINT ["/entrypoint.sh"]',
        'CMD ["run", "web"]',
        "LABEL org.sentryfab.lab.sentry=0123456789ab",
    ]


def test_import_argv():
    assert si.import_argv("lab/sentry:9.1.2", "k") == [
        "docker", "import",
        "--change", "ENV PATH=/opt/sentry/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"
                    ":/sbin:/bin",
        "--change", "ENV LANG=C.UTF-8",
        "--change", "ENV SENTRY_CONF=/etc/sentry",
        "--change", "ENV SENTRY_FILESTORE_DIR=/var/lib/sentry/files",
        "--change", "EXPOSE 9000",
        "--change", 'ENTRYPOINT ["/entrypoint.sh"]',
        "--change", 'CMD ["run", "web"]',
        "--change", "LABEL org.sentryfab.lab.sentry=k",
        "-", "lab/sentry:9.1.2"]


def test_label_argv():
    assert si.label_argv("lab/sentry:9.1.1") == [
        "docker", "image", "inspect", "--format",
        '{{index .Config.Labels "org.sentryfab.lab.sentry"}}', "lab/sentry:9.1.1"]


def test_entrypoint_text():
    assert si.ENTRYPOINT_TEXT == (
        "#!/bin/sh\n"
        "# Entrypoint of sentryfab's lab image of Sentry; behaves like the official sentry:9.1 "
        "one.\n"
        "set -e\n"
        "\n"
        "# A flag or a Sentry subcommand first: it is meant for `sentry`.\n"
        'case "$1" in\n'
        "\t-*|cleanup|config|consumer|createuser|devserver|devservices|django|exec|export|files"
        "|help|import|init|permissions|plugins|queues|repair|run|shell|start|tsdb|upgrade)\n"
        '\t\tset -- sentry "$@"\n'
        "\t\t;;\n"
        "esac\n"
        "\n"
        "# Sentry runs under tini (signals, zombies) and, when started as root, as its own "
        "user.\n"
        'if [ "$1" = sentry ]; then\n'
        '\tset -- tini -- "$@"\n'
        '\tif [ "$(id -u)" = 0 ]; then\n'
        '\t\tmkdir -p "$SENTRY_FILESTORE_DIR"\n'
        '\t\tfind "$SENTRY_FILESTORE_DIR" ! -user sentry -exec chown sentry {} +\n'
        '\t\tset -- gosu sentry "$@"\n'
        "\tfi\n"
        "fi\n"
        "\n"
        'exec "$@"\n'
    )


def test_sentry_hosts_are_web_worker_and_cron():
    hosts = role_hosts() + scale_hosts(2)
    assert [h.name for h in si.sentry_hosts(hosts)] == ["web-1", "web-2", "worker-1",
                                                        "worker-2"]

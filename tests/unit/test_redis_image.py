"""The lab's Redis 6 image: its recipe, cache key, uid fix-up and the hosts it goes to."""

from __future__ import annotations

from sentryfab.lab import image
from sentryfab.lab import redis_image as ri
from sentryfab.lab.topology import role_hosts, scale_hosts

MIRROR = "http://deb.debian.org/debian"


def test_it_is_bullseye_redis_6_with_python_redis():
    assert (ri.SUITE, ri.MAJOR, ri.REF) == ("bullseye", "6", "lab/redis:6")
    assert set(ri.PACKAGES) == {"redis-server", "python3", "python3-redis"}


def test_the_key_covers_the_recipe_and_leaves_the_base_key_alone():
    key = image.cache_key(ri.SUITE, ri.PACKAGES, MIRROR, *ri.recipe())
    assert key != image.cache_key(ri.SUITE, ri.PACKAGES, MIRROR)
    assert key != image.cache_key(ri.SUITE, ri.PACKAGES, MIRROR, "redis", ri.RECIPE + "x",
                                  ri.user_script())
    assert key != image.cache_key(ri.SUITE, ri.PACKAGES, MIRROR, "redis", ri.RECIPE,
                                  ri.user_script(101))
    # No extra inputs: the same key as before extras existed, so lab/base:1 is not rebuilt.
    assert image.cache_key("bookworm", ["curl"], MIRROR) == "4c7e7bf92c5f"


def test_user_script_moves_the_redis_user_to_the_roles_uid():
    assert ri.user_script() == (
        "old=$(id -u redis)\n"
        'if [ "$old" != 100 ]; then\n'
        "    holder=$(getent passwd 100 | cut -d: -f1)\n"
        '    if [ -n "$holder" ]; then\n'
        '        usermod -u 42 "$holder"\n'
        "        find / -xdev -uid 100 -exec chown -h 42 {} +\n"
        "    fi\n"
        "    usermod -u 100 redis\n"
        '    find / -xdev -uid "$old" -exec chown -h 100 {} +\n'
        "fi\n"
        '[ "$(id -u redis)" = 100 ]')


def test_the_uid_is_the_one_sentryfab_chowns_redis_data_to():
    from sentryfab.configs.context import ROLE_DEFAULTS

    assert {ROLE_DEFAULTS[r]["uid"] for r in ("redis-cache", "redis-queue")} == {ri.UID}


def test_parse_version():
    out = "Redis server v=6.0.16 sha=00000000:0 malloc=jemalloc-5.2.1 bits=64 build=6d95e1a\n"
    assert ri.parse_version(out) == "6.0.16"
    assert ri.parse_version("redis-server: not found") is None


def test_only_redis_hosts_get_it():
    hosts = role_hosts() + scale_hosts(2)
    assert [h.name for h in ri.redis_hosts(hosts)] == ["redis-cache-1", "redis-queue-1"]

"""The lab's Redis 6 image for Sentry's Redis roles, built once and cached.

Sentry 9.1.2's digests run Lua scripts that assign globals, which Redis 7 refuses
("Attempt to modify a readonly table"): every worker then fails to send alert digests.
Sentry 9's era ran Redis 3.2 to 5, and 6.x still allows them. Bookworm (lab/base:1) has
only Redis 7, so this root is a debootstrapped bullseye (redis-server 6.0.16), with
python3-redis for tests that write into the cache. It is packed as `redis-6-<key>.tar`
under ~/.cache/sentryfab/ and imported as lab/redis:6 into the engine of every host with
a Redis role, labelled with its key like lab/base:1.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from sentryfab.errors import LabError
from sentryfab.lab import commands as cmd
from sentryfab.lab import image
from sentryfab.lab.image import BaseImage, Step
from sentryfab.lab.sentry_image import chroot_argv
from sentryfab.lab.system import run
from sentryfab.lab.topology import REDIS_IMAGE, REDIS_ROLES, REDIS_TAG, Host

# Bump when the build below changes in a way none of the other key inputs shows.
RECIPE = "1"
SUITE = "bullseye"
MAJOR = "6"
# Besides Redis: python3-redis for tests; sh, grep, head, sed, tr, wc and timeout (health
# checks, status, config validation) are in every minbase root.
PACKAGES = ("redis-server", "python3", "python3-redis")
REF = f"{REDIS_IMAGE}:{REDIS_TAG}"
# The uid sentryfab chowns the Redis roles' data and configs to (ROLE_DEFAULTS), which
# bookworm's redis user has. Bullseye's apt takes 100 for _apt before redis-server comes,
# so _apt moves to 42, the uid bookworm gives it.
UID = 100
SPARE_UID = 42


def user_script(uid: int = UID, spare: int = SPARE_UID) -> str:
    """Give the redis user `uid` (and its files), moving whoever had it to `spare`."""
    return "\n".join([
        "old=$(id -u redis)",
        f'if [ "$old" != {uid} ]; then',
        f"    holder=$(getent passwd {uid} | cut -d: -f1)",
        '    if [ -n "$holder" ]; then',
        f'        usermod -u {spare} "$holder"',
        f"        find / -xdev -uid {uid} -exec chown -h {spare} {{}} +",
        "    fi",
        f"    usermod -u {uid} redis",
        f'    find / -xdev -uid "$old" -exec chown -h {uid} {{}} +',
        "fi",
        f'[ "$(id -u redis)" = {uid} ]',
    ])


def parse_version(output: str) -> str | None:
    """The version `redis-server --version` printed ("Redis server v=6.0.16 sha=...")."""
    for word in output.split():
        if word.startswith("v="):
            return word[2:]
    return None


def recipe() -> tuple[str, ...]:
    """What goes into the tar beyond suite, packages and mirror: part of its key."""
    return ("redis", RECIPE, user_script())


def current_key() -> str:
    """The key of the Redis tar this machine would build now."""
    return image.cache_key(SUITE, PACKAGES, image.read_mirror(SUITE), *recipe())


def redis_hosts(candidates: Iterable[Host]) -> list[Host]:
    """The hosts that run a Redis role and so need the image."""
    return [h for h in candidates if h.has_docker and set(REDIS_ROLES) & set(h.roles)]


def ensure_redis_tar(on_step: Step | None = None) -> BaseImage:
    """The cached Redis tar for the current key, built with debootstrap if missing (~1 min)."""
    return image.ensure_tar(f"redis-{MAJOR}", SUITE, PACKAGES, on_step, extra=recipe(),
                            finish=_finish, what=f"the Redis {MAJOR} image")


def _finish(rootfs: Path) -> None:
    """The redis user gets its uid; the root's Redis must be `MAJOR`.x."""
    run(chroot_argv(rootfs, user_script()), what=f"giving the redis user uid {UID}",
        timeout=300)
    shown = run(chroot_argv(rootfs, "redis-server --version"), what="redis-server --version")
    version = parse_version(shown.stdout) or "?"
    if version.split(".")[0] != MAJOR:
        raise LabError(f"{SUITE}'s redis-server is {version}, not {MAJOR}.x: Sentry 9's digests "
                       f"need a Redis before 7. Change SUITE in {__name__}.")


def ensure_image(host: Host, anchor: int, tar: BaseImage, on_step: Step | None = None) -> bool:
    """Import the Redis tar into the host's engine unless it has it already; True if so."""
    return image.ensure_image(host, anchor, tar, on_step, ref=REF, path=cmd.SANE_PATH)

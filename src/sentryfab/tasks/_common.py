"""What every task shares: clean error exits, the inventory, and host selection."""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from invoke.exceptions import Exit

from ..errors import ChangeInterrupted, Interrupted, RenderError, SentryfabError

# Task modules import their procedures and the rich-based ui inside the task bodies: `fab`
# starts a new interpreter per command, and `fab run` should not pay for Jinja2 or the lab.
if TYPE_CHECKING:
    from ..inventory import Host, Inventory
    from ..secrets import Secrets

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_PARALLEL = 32  # the same as remote.DEFAULT_PARALLEL, without importing paramiko

#: --help texts shared by every task that selects hosts.
SELECT_HELP = {
    "roles": "comma-separated roles (web, worker, cron, redis, redis-cache, redis-queue, db, "
             "pgbouncer, nginx)",
    "hosts": "comma-separated host names or globs, e.g. web-1,web-2*",
    "exclude": "comma-separated host names or globs to leave out",
    "parallel": "how many hosts at once (default 32; 1 = one after another, in order)",
    "accept-new": "record unknown host keys (like StrictHostKeyChecking=accept-new); "
                  "changed keys are still refused",
    "json": "print machine-readable JSON instead of tables",
}


def helps(*names: str, **extra: str) -> dict[str, str]:
    """--help texts for the shared options a task has, plus its own."""
    return {n: SELECT_HELP[n] for n in names} | {k.replace("_", "-"): v for k, v in extra.items()}


#: Every task takes --no-persist (tasks/__init__.py gives it this help).
NO_PERSIST_HELP = ("connect directly and close the connections at the end, instead of "
                   "through the connections held between commands (ssh: persist:)")


def handled(fn: F) -> F:
    """Turn sentryfab errors into a message and an exit code; never a traceback. Also
    gives the task --no-persist."""

    @functools.wraps(fn)
    def wrapper(*args: Any, no_persist: bool = False, **kwargs: Any) -> Any:
        if no_persist:
            from ..inventory import NO_PERSIST_ENV

            os.environ[NO_PERSIST_ENV] = "1"  # read by remote.held_client
        try:
            return fn(*args, **kwargs)
        except ChangeInterrupted as e:
            from ..ui import change as change_ui

            change_ui.interrupted(e)
            raise Exit(code=e.exit_code) from None
        except Interrupted as e:
            from ..ui import console
            from ..ui import run as run_ui

            run_ui.report(e.results, None, show_output=False)
            console.error(e)
            raise Exit(code=e.exit_code) from None
        except RenderError as e:
            from ..ui import console

            console.error_list("cannot render the configs", e.problems)
            raise Exit(code=e.exit_code) from None
        except SentryfabError as e:
            from ..ui import console

            console.error(e)
            raise Exit(code=e.exit_code) from None
        except KeyboardInterrupt:
            from ..ui import console

            console.err.print("[red]interrupted[/]")
            raise Exit(code=130) from None

    sig = inspect.signature(fn)
    flag = inspect.Parameter("no_persist", inspect.Parameter.KEYWORD_ONLY, default=False)
    wrapper.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[*sig.parameters.values(), flag])
    return wrapper  # type: ignore[return-value]


def load_inventory() -> Inventory:
    """The inventory named by $SENTRYFAB_INVENTORY or ./hosts.yaml."""
    from .. import inventory

    return inventory.load()


def secrets_path(inv: Inventory) -> Path | None:
    """The inventory's 'secrets:' file, relative to the inventory's folder."""
    raw = inv.extra.get("secrets")
    if not raw:
        return None
    p = Path(str(raw)).expanduser()
    return p if p.is_absolute() else inv.path.parent / p


def load_secrets(inv: Inventory) -> Secrets:
    """Secrets from the inventory's file and SENTRYFAB_SECRET_* variables."""
    from .. import secrets

    return secrets.load(secrets_path(inv))


def selected(inv: Inventory, roles: str | None, hosts: str | None,
             exclude: str | None) -> list[Host]:
    """The hosts picked by --roles/--hosts/--exclude (all when none is given)."""
    from ..selection import Selection, select

    return select(inv, Selection(roles=roles, hosts=hosts, exclude=exclude))

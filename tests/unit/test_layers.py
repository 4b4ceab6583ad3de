"""The import layers of DESIGN.md, checked on the source: pure packages import neither `remote`
nor `ui` (nor procedures, tasks, the lab, Fabric, paramiko or Invoke), and nothing but the task
tree imports `sentryfab.tasks`. Every import counts, at any depth (inside functions too)."""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "sentryfab"

#: Pure knowledge: no I/O layer, no printing, no workflow (packages and single modules).
PURE = ("plans", "configs", "containers", "status", "topology", "inventory", "selection",
        "shell", "folding", "lockinfo", "auditlog", "become", "roles", "results", "errors",
        "runbook")
#: What pure code never imports.
NOT_FOR_PURE = ("sentryfab.remote", "sentryfab.ui", "sentryfab.procedures", "sentryfab.tasks",
                "sentryfab.lab", "fabric", "paramiko", "invoke")
#: The only importers of the task tree: itself, and the `sentryfab` console script (cli.py,
#: Fabric's program over the tree: what fabfile.py is for `fab`). tasks.py at the repo root is
#: outside src/ and imports it as it should.
TASKS = "sentryfab.tasks"
TASKS_IMPORTERS = ("sentryfab.tasks", "sentryfab.cli")


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


#: A module imported by name at run time: importlib.import_module("...") or __import__("...").
DYNAMIC = re.compile(r"""(?:import_module|__import__)\(\s*['"]([\w.]+)['"]""")


def _statements(nodes: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Every statement, nested ones too (imports inside functions, classes, if, try, with)."""
    for node in nodes:
        yield node
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            yield from _statements(getattr(node, field, None) or [])


def imports(path: Path, root: Path) -> list[list[str]]:
    """Every import in `path`, each as the absolute names it may bring in, shortest first:
    `from a import b, c` is [a, a.b, a.c] (b may be a module); relative imports resolved;
    importlib.import_module("...") with a literal counts too."""
    module = _module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    source_text = path.read_text()
    found: list[list[str]] = [[name] for name in DYNAMIC.findall(source_text)]
    for node in _statements(ast.parse(source_text, str(path)).body):
        if isinstance(node, ast.Import):
            found += [[alias.name] for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[:len(parts) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            found.append([source, *(f"{source}.{alias.name}" for alias in node.names)])
    return found


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _breaking(site: list[str], forbidden: tuple[str, ...]) -> list[str]:
    """The names of one import that are forbidden: the module itself if it is, else each
    forbidden name it brings in."""
    def bad(name: str) -> bool:
        return any(_within(name, prefix) for prefix in forbidden)

    return [site[0]] if bad(site[0]) else [name for name in site[1:] if bad(name)]


@functools.cache
def violations(root: Path) -> frozenset[tuple[str, str]]:
    """(importer, imported) for every import that breaks a layer, in the tree at `root`
    (a `sentryfab` package folder)."""
    def here(name: str) -> str:
        return name.replace("sentryfab", root.name, 1) if name.startswith("sentryfab") else name

    pure = tuple(f"{root.name}.{name}" for name in PURE)
    forbidden = tuple(here(name) for name in NOT_FOR_PURE)
    tasks_importers = tuple(here(name) for name in TASKS_IMPORTERS)
    found = set()
    for path in sorted(root.rglob("*.py")):
        module = _module_name(path, root)
        is_pure = any(_within(module, name) for name in pure)
        may_import_tasks = any(_within(module, name) for name in tasks_importers)
        for site in imports(path, root):
            if is_pure:
                found |= {(module, name) for name in _breaking(site, forbidden)}
            if not may_import_tasks:
                found |= {(module, name) for name in _breaking(site, (here(TASKS),))}
    return frozenset(found)


def test_pure_packages_import_no_io_ui_or_workflow_and_only_the_task_tree_imports_tasks():
    new = violations(SRC)
    assert not new, "layer violations (pure code importing a layer above it, or something " \
                    "importing the task tree):\n" + "\n".join(f"  {m} imports {n}"
                                                              for m, n in sorted(new))


def test_every_pure_name_is_a_package_or_module_here():
    missing = [name for name in PURE
               if not (SRC / name).is_dir() and not (SRC / f"{name}.py").is_file()]
    # topology/ is being made from failover/'s pure parts (issue 14); nothing else may be absent.
    assert set(missing) <= {"topology"}, missing


def _plant(root: Path, files: dict[str, str]) -> Path:
    package = root / "sentryfab"
    for rel, text in {"__init__.py": "", **files}.items():
        path = package / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(package).parents:
            init = package / parent / "__init__.py"
            if not init.exists():
                init.write_text("")
        path.write_text(text)
    return package


def test_the_check_finds_each_kind_of_violation(tmp_path):
    package = _plant(tmp_path, {
        "plans/bad.py": "def f():\n    from ..remote import Runner\n    return Runner\n",
        "status/x.py": "import sentryfab.ui.console\n",
        "containers/y.py": "from sentryfab import procedures\n",
        "configs/z.py": "import importlib\nimportlib.import_module('paramiko')\n",
        "selection.py": "from . import tasks\n",
        "procedures/w.py": "from ..tasks import ns\nfrom ..remote import Runner\n",
        "plans/fine.py": "from ..inventory import Host\nfrom . import bad\n",
        "tasks/v.py": "from . import w\nfrom ..procedures import w as pw\n",
        "cli.py": "from .tasks import ns\n",
        "ui/u.py": "from ..remote import Runner\n",
    })
    assert violations(package) == {
        ("sentryfab.plans.bad", "sentryfab.remote"),
        ("sentryfab.status.x", "sentryfab.ui.console"),
        ("sentryfab.containers.y", "sentryfab.procedures"),
        ("sentryfab.configs.z", "paramiko"),
        ("sentryfab.selection", "sentryfab.tasks"),
        ("sentryfab.procedures.w", "sentryfab.tasks"),
    }


def test_a_clean_tree_passes(tmp_path):
    package = _plant(tmp_path, {
        "status/checks.py": "from ..inventory import Host\nfrom .model import Problem\n",
        "procedures/status.py": "from ..remote import Runner\nfrom ..status import checks\n",
        "ui/status.py": "from ..status.model import HostStatus\n",
        "tasks/status.py": "def t():\n    from ..procedures.status import run\n",
    })
    assert violations(package) == set()

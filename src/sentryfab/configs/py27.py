"""Is a sentry.conf.py loadable by Sentry 9, which runs on Python 2.7? A static check.

The check is Python source text, run in the Sentry image by the config validator (where the
interpreter may be 2.7 or 3) and in-process by the unit tests, so the text itself is written
for both: no f-strings, no annotations, % formatting. It parses the file with the running
Python and walks the tree for what 2.7 cannot load: Python-3-only syntax, modules, builtins,
__future__ features, and string literals that 2.7 reads differently. On 2.7 the parse alone
refuses 3-only syntax; on 3 the walk does, so the answer does not depend on the image.
"""

from __future__ import annotations

PY27_CHECK = r'''
import ast, io, re, sys, tokenize

PY3_MODULES = (
    "urllib.parse", "urllib.request", "urllib.error", "urllib.response", "http", "html",
    "queue", "socketserver", "configparser", "builtins", "reprlib", "copyreg", "_thread",
    "xmlrpc", "tkinter", "dbm.gnu", "pathlib", "typing", "dataclasses", "asyncio", "secrets",
    "statistics", "selectors", "lzma", "faulthandler", "venv", "zipapp", "contextvars",
    "importlib.metadata", "importlib.resources", "graphlib", "zoneinfo", "tomllib",
)
PY3_NAMES = {"shlex": ("quote",), "itertools": ("zip_longest", "accumulate"),
             "functools": ("lru_cache", "partialmethod", "singledispatch"),
             "os": ("scandir", "replace", "get_terminal_size"), "math": ("inf", "isclose")}
PY3_BUILTINS = (
    "FileNotFoundError", "FileExistsError", "PermissionError", "TimeoutError",
    "ConnectionError", "ConnectionRefusedError", "ConnectionResetError",
    "ConnectionAbortedError", "BrokenPipeError", "ProcessLookupError", "ChildProcessError",
    "BlockingIOError", "InterruptedError", "IsADirectoryError", "NotADirectoryError",
    "ModuleNotFoundError", "RecursionError", "StopAsyncIteration", "ascii", "breakpoint",
)
PY27_FUTURES = ("nested_scopes", "generators", "division", "absolute_import",
                "with_statement", "print_function", "unicode_literals")
PY3_NODES = {
    "JoinedStr": "an f-string", "Nonlocal": "nonlocal", "AsyncFunctionDef": "async def",
    "AsyncFor": "async for", "AsyncWith": "async with", "Await": "await",
    "YieldFrom": "yield from", "AnnAssign": "a variable annotation",
    "NamedExpr": "the := operator", "Match": "match", "TryStar": "except*",
}
CODING = re.compile(br"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)")
PLAIN_ESCAPE = re.compile(r"\\(?:\\|[uUN])")


def py27_problems(path, source):
    """'path:line: what' for every construct of `source` (bytes) that 2.7 cannot load."""
    found = []  # (line, what)

    def add(line, what):
        found.append((line if isinstance(line, int) else 0, what))

    lines = source.splitlines()
    if not any(CODING.match(l) for l in lines[:2]):
        for n, l in enumerate(lines, 1):
            if re.search(b"[\x80-\xff]", l):
                add(n, "a non-ASCII character and no coding declaration")
                break
    try:
        tree = compile(source, path, "exec", ast.PyCF_ONLY_AST)
    except SyntaxError as e:
        # Broken for this Python: on 2.7, maybe a Python-3-only construct; on 3, maybe broken
        # for every Python. Either way Sentry could not load it.
        return _report(path, found) + ["%s:%s: SyntaxError: %s" % (path, e.lineno, e.msg)]

    futures = set()
    in_calls = set()
    prints = []
    for node in ast.walk(tree):
        kind = type(node).__name__
        line = getattr(node, "lineno", "?")
        if kind in PY3_NODES:
            add(line, PY3_NODES[kind])
        elif kind == "BinOp" and type(node.op).__name__ == "MatMult":
            add(line, "the @ operator")
        elif kind == "Import":
            for a in node.names:
                _module(add, line, a.name)
        elif kind == "ImportFrom" and not node.level:
            mod = node.module or ""
            if mod == "__future__":
                for a in node.names:
                    futures.add(a.name)
                    if a.name not in PY27_FUTURES:
                        add(line, "from __future__ import %s" % a.name)
            elif not _module(add, line, mod):
                for a in node.names:
                    if a.name in PY3_NAMES.get(mod, ()):
                        add(line, "%s.%s, which Python 2.7's %s lacks" % (mod, a.name, mod))
        elif kind in ("FunctionDef", "Lambda"):
            args = node.args
            if getattr(args, "kwonlyargs", None):
                add(line, "keyword-only arguments")
            if getattr(args, "posonlyargs", None):
                add(line, "positional-only arguments")
            every = (list(args.args) + list(getattr(args, "kwonlyargs", []))
                     + [a for a in (args.vararg, args.kwarg) if a is not None])
            if getattr(node, "returns", None) is not None or any(
                    getattr(a, "annotation", None) is not None for a in every):
                add(line, "a function annotation")
        elif kind == "Raise" and getattr(node, "cause", None) is not None:
            add(line, "raise ... from")
        elif kind == "Dict" and any(k is None for k in node.keys):
            add(line, "{**mapping} in a dict display")
        elif kind == "Call":
            stars = [a for a in node.args if type(a).__name__ == "Starred"]
            in_calls.update(id(a) for a in stars)
            if len(stars) > 1 or (stars and node.args[-1] is not stars[-1]):
                add(line, "several *iterables, or arguments after one, in a call")
            kw = [k.arg for k in node.keywords]
            if kw.count(None) > 1 or (None in kw and kw[-1] is not None):
                add(line, "several **mappings, or keywords after one, in a call")
            fn = getattr(node.func, "id", None)
            if fn == "super" and not node.args:
                add(line, "super() without arguments")
            if fn == "print" and node.keywords:
                prints.append(line)  # fine with the __future__ import, known after the walk
        elif kind == "Name" and node.id in PY3_BUILTINS and type(node.ctx).__name__ == "Load":
            add(line, "%s, a Python 3 builtin" % node.id)
    for node in ast.walk(tree):
        if type(node).__name__ == "Starred" and id(node) not in in_calls:
            add(node.lineno, "* unpacking in an assignment or a display")

    if "print_function" not in futures:
        for line in prints:
            add(line, "print(..., keyword=...) without from __future__ import print_function")

    if sys.version_info[0] >= 3:
        text = source.decode("utf-8", "replace")
        readline = io.StringIO(text).readline
    else:
        readline = io.BytesIO(source).readline
    for tok in tokenize.generate_tokens(readline):
        kind, value, (line, _) = tok[0], tok[1], tok[2]
        if kind == tokenize.NUMBER and "_" in value:
            add(line, "a number written with _")
        elif kind == tokenize.STRING:
            prefix = value[:len(value) - len(value.lstrip("bBrRuUfF"))].lower()
            if "r" in prefix and "b" in prefix and prefix.index("r") < prefix.index("b"):
                add(line, "an rb'' string literal")
            if (not prefix and "unicode_literals" not in futures
                    and any(m.group(0) != "\\\\" for m in PLAIN_ESCAPE.finditer(value))):
                add(line, "a \\u, \\U or \\N escape in a plain string literal, which "
                          "Python 2.7 keeps as text: write u\"...\"")
    return _report(path, found)


def _report(path, found):
    return ["%s:%s: %s (Sentry 9 runs on Python 2.7)" % (path, line, what)
            for line, what in sorted(found, key=lambda f: f[0])]


def _module(add, line, name):
    for m in PY3_MODULES:
        if name == m or name.startswith(m + "."):
            add(line, "import of %s, a Python 3 module" % name)
            return True
    return False
'''


def problems(path: str, source: bytes) -> list[str]:
    """Run the check in this process (the unit tests' way): 'path:line: what' per problem."""
    ns: dict = {"__name__": "py27_check"}
    exec(PY27_CHECK, ns)  # noqa: S102 - our own constant text
    return ns["py27_problems"](path, source)

"""One small exception tree. Tasks turn these into a clean exit code, never a traceback."""

from __future__ import annotations


class SentryfabError(Exception):
    """Base of every error sentryfab raises on purpose; `exit_code` is what the CLI returns."""

    exit_code = 1


class UsageError(SentryfabError):
    """The command line asked for something impossible (bad option, empty selection)."""

    exit_code = 2


class InventoryError(SentryfabError):
    """hosts.yaml is missing or invalid; carries every problem found, not only the first."""

    exit_code = 2

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class SelectionError(UsageError):
    """--roles/--hosts/--exclude matched nothing or named something unknown."""


class RemoteError(SentryfabError):
    """A remote step failed in a way that stops the whole procedure."""


class LabError(SentryfabError):
    """The local lab could not be built, started or removed."""


class RenderError(SentryfabError):
    """One or more templates could not be rendered; nothing was pushed."""

    exit_code = 2

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("cannot render the configs:\n  " + "\n  ".join(problems))


class Interrupted(SentryfabError):
    """Ctrl-C during a fan-out; `results` (HostResult list) says what ran where."""

    exit_code = 130

    def __init__(self, results: list):
        self.results = results
        super().__init__("interrupted: no new host was started, open connections were closed")


class ChangeInterrupted(SentryfabError):
    """Ctrl-C during a guarded change: the step it was at, what was put back, the state each
    touched host is left in (host -> containers), and the fan-out's results if any."""

    exit_code = 130

    def __init__(self, action: str, step: str, undone: list[str], left: dict[str, str],
                 results: list):
        self.action, self.step, self.undone, self.left, self.results = \
            action, step, undone, left, results
        super().__init__(f"{action} interrupted (Ctrl-C) during {step}")

"""Bad input through the real CLI: each ends in exit 2 with the inventory's file:line, never a
traceback (issue 13's "Low" items). One `fab` process per item, on an offline task."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).parent / "fab")
REF_TEXT = (REPO / "hosts.yaml").read_text()


def _edit(*pairs: tuple[str, str]) -> str:
    """The reference inventory with each (old, new) replaced exactly once."""
    text = REF_TEXT
    for old, new in pairs:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def _line(text: str, needle: str) -> int:
    """The line `needle` is on in `text` (it must be on exactly one)."""
    found = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(found) == 1, (needle, found)
    return found[0]


def fab(tmp_path: Path, content: str | bytes, *task: str) -> str:
    """Run `fab <task>` on `content` as the inventory; assert exit 2 and no traceback; the
    output with its line wrapping undone."""
    path = tmp_path / "hosts.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    env = {**os.environ, "SENTRYFAB_INVENTORY": str(path), "COLUMNS": "300"}
    proc = subprocess.run([FAB, *task], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out, out
    assert not (tmp_path / "docs").exists()  # nothing was written
    return " ".join(proc.stderr.split())


def test_base_port_abc(tmp_path):
    text = _edit(("base_port: 9000", "base_port: abc"))
    out = fab(tmp_path, text, "docs", "--offline")
    assert (f"hosts.yaml:{_line(text, 'base_port: abc')}: roles/web/base_port: must be int, "
            "got str") in out


def test_processes_with_shell_syntax_as_a_host_var(tmp_path):
    text = _edit(("web-1: {address: 10.20.1.11, roles: [web]}",
                  'web-1: {address: 10.20.1.11, roles: [web], vars: {processes: "2; id"}}'))
    out = fab(tmp_path, text, "capacity", "--offline")
    assert (f"hosts.yaml:{_line(text, '2; id')}: hosts/web-1/vars/processes: must be int, "
            "got str") in out


def test_uid_root(tmp_path):
    text = _edit(("    threads: 4\n", "    threads: 4\n    uid: root\n"))
    out = fab(tmp_path, text, "capacity", "--offline")
    assert f"hosts.yaml:{_line(text, 'uid: root')}: roles/web/uid: must be int, got str" in out


def test_non_finite_timeouts(tmp_path):
    text = _edit(("connect_timeout: 10", "connect_timeout: .nan"),
                 ("    threads: 4\n", "    threads: 4\n    health_timeout: .inf\n"))
    out = fab(tmp_path, text, "capacity", "--offline")
    assert (f"hosts.yaml:{_line(text, 'connect_timeout')}: ssh/connect_timeout: must be a "
            "finite number, got nan") in out
    assert (f"hosts.yaml:{_line(text, 'health_timeout')}: roles/web/health_timeout: must be a "
            "finite number, got inf") in out


def test_an_inventory_that_is_not_utf8(tmp_path):
    text = _edit(("cluster: sentry-prod", "cluster: sentry-pr\udce9d"))
    data = text.encode("utf-8", "surrogateescape")  # a latin-1 é, as an old editor saves it
    out = fab(tmp_path, data, "capacity", "--offline")
    offset = data.index(b"\xe9")
    assert (f"hosts.yaml:{_line(text, 'cluster:')}: not UTF-8 text (byte 0xe9 at offset "
            f"{offset})") in out


def test_host_vars_yaml_turned_into_other_types(tmp_path):
    text = _edit(("web-1: {address: 10.20.1.11, roles: [web]}",
                  "web-1: {address: 10.20.1.11, roles: [web], vars: {tag: 24.10, image: 5, "
                  "worker_connections: '4096'}}"))
    out = fab(tmp_path, text, "capacity", "--offline")
    at = f"hosts.yaml:{_line(text, 'tag: 24.10')}: hosts/web-1/vars"
    assert (f'{at}/tag: must be str, got float (write tag: "24.10" so YAML keeps it a '
            "string)") in out
    assert f'{at}/image: must be str, got int (write image: "5" so YAML keeps it a string)' in out
    assert f"{at}/worker_connections: must be int, got str" in out


def test_a_host_named_yes(tmp_path):
    text = _edit(("  lb-2:", "  yes: {address: 10.20.0.13, roles: [nginx]}\n  lb-2:"))
    out = fab(tmp_path, text, "capacity", "--offline")
    assert (f"hosts.yaml:{_line(text, 'yes:')}: hosts: host name yes: YAML read it as a bool "
            '(True), not text (quote it: "yes")') in out


def test_a_refusal_through_the_cli_exits_2_with_the_message_on_stderr():
    env = {**os.environ, "SENTRYFAB_INVENTORY": str(REPO / "hosts.yaml")}
    proc = subprocess.run([FAB, "web.scale", "--processes", "4", "--hosts", "web-1,web-2"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert ("web.scale sets roles.web.processes, which every web host follows, but the "
            "selection leaves out web-3, web-4") in proc.stderr
    assert "give those hosts their own 'processes' in their vars first" in proc.stderr

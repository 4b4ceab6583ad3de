"""The secrets file is read once, never through a symlink, and broken ones fail cleanly."""

from __future__ import annotations

import os

import pytest

from sentryfab import secrets
from sentryfab.secrets import SecretError


def write(path, data: bytes, mode: int = 0o600):
    path.write_bytes(data)
    path.chmod(mode)
    return path


def test_a_good_file_reads(tmp_path):
    p = write(tmp_path / "s.yaml", b"db_password: abc\n")
    assert secrets.load(p, environ={}).get("db_password") == "abc"


def test_a_symlink_is_not_followed_even_to_a_good_file(tmp_path):
    target = write(tmp_path / "real.yaml", b"db_password: abc\n")
    link = tmp_path / "s.yaml"
    link.symlink_to(target)
    with pytest.raises(SecretError, match="is a symlink: name the file itself"):
        secrets.load(link, environ={})


def test_a_directory_and_non_utf8_and_group_readable_are_clean_errors(tmp_path):
    d = tmp_path / "dir"
    d.mkdir(mode=0o700)
    with pytest.raises(SecretError, match="not a regular file"):
        secrets.load(d, environ={})
    bad = write(tmp_path / "bad.yaml", b"a: 1\nb: caf\xe9\n")
    with pytest.raises(SecretError, match=r"bad.yaml:2: not UTF-8 text"):
        secrets.load(bad, environ={})
    loose = write(tmp_path / "loose.yaml", b"a: b\n", 0o640)
    with pytest.raises(SecretError, match="mode 0640 lets other users read"):
        secrets.load(loose, environ={})


def test_generate_force_never_writes_through_a_symlink(tmp_path):
    victim = write(tmp_path / "victim", b"keep me\n")
    link = tmp_path / "s.yaml"
    link.symlink_to(victim)
    with pytest.raises(SecretError, match="is a symlink: refusing to write"):
        secrets.write_new(link, {"a": "b"}, force=True)
    assert victim.read_bytes() == b"keep me\n"
    assert os.stat(victim).st_mode & 0o777 == 0o600

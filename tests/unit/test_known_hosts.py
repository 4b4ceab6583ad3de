"""known_hosts lookup: plain and hashed names, ports, many lines read once."""

from __future__ import annotations

import paramiko

from sentryfab.remote.hostkeys import KnownHosts, known_hosts_name


def test_plain_hashed_and_port_entries(tmp_path):
    pub = "AAAAC3NzaC1lZDI1NTE5AAAAIEhOJ7/NZHfQKOxGIcas/dnVufenJxY6dnXYjYuiT8Px"
    other = pub
    lines = [f"{paramiko.HostKeys.hash_host(f'10.9.{i // 250}.{i % 250}')} ssh-ed25519 {other}"
             for i in range(2000)]
    lines += [
        f"10.0.0.1 ssh-ed25519 {pub}",
        f"{paramiko.HostKeys.hash_host('10.0.0.2')} ssh-ed25519 {pub}",
        f"[10.0.0.3]:2222 ssh-ed25519 {pub}",
        "# a comment", "", "garbage line",
    ]
    f = tmp_path / "known_hosts"
    f.write_text("\n".join(lines) + "\n")
    known = KnownHosts([f, tmp_path / "missing"])
    assert [k.get_base64() for k in known.keys_for("10.0.0.1")] == [pub]
    assert [k.get_base64() for k in known.keys_for("10.0.0.2")] == [pub]
    assert known.keys_for("10.0.0.3") == []
    assert [k.get_base64() for k in known.keys_for(known_hosts_name("10.0.0.3", 2222))] == [pub]
    assert len(known.keys_for("10.9.3.17")) == 1
    client = paramiko.SSHClient()
    known.install(client, "10.0.0.2")
    assert client.get_host_keys().lookup("10.0.0.2")["ssh-ed25519"].get_base64() == pub


PUB = "AAAAC3NzaC1lZDI1NTE5AAAAIEhOJ7/NZHfQKOxGIcas/dnVufenJxY6dnXYjYuiT8Px"


def _key() -> paramiko.PKey:
    return paramiko.Ed25519Key(data=__import__("base64").b64decode(PUB))


def test_a_malformed_hashed_line_is_skipped_with_a_warning_not_a_crash(tmp_path):
    f = tmp_path / "known_hosts"
    f.write_text(f"|1|not*base64|AAAA ssh-ed25519 {PUB}\n10.0.0.1 ssh-ed25519 {PUB}\n")
    known = KnownHosts([f])
    assert known.warnings == [f"{f}:1: malformed hashed host name: line skipped"]
    assert [k.get_base64() for k in known.keys_for("10.0.0.1")] == [PUB]
    assert known.keys_for("10.0.0.9") == []  # looking up other names does not raise


def test_revoked_keys_are_never_trusted_nor_recorded(tmp_path):
    import pytest

    from sentryfab.remote.hostkeys import AcceptNew, HostKeyError, RefuseUnknown

    f = tmp_path / "known_hosts"
    f.write_text(f"10.0.0.1 ssh-ed25519 {PUB}\n@revoked * ssh-ed25519 {PUB}\n")
    known = KnownHosts([f])
    assert known.keys_for("10.0.0.1") == [] and known.is_revoked(_key())
    record = tmp_path / "recorded"
    for policy in (AcceptNew(record, known), RefuseUnknown(record, known)):
        with pytest.raises(HostKeyError, match="REVOKED host key for 10.0.0.1"):
            policy.missing_host_key(paramiko.SSHClient(), "10.0.0.1", _key())
    assert not record.exists()


def test_cert_authority_lines_are_reported_and_accept_new_records_nothing_under_them(tmp_path):
    import pytest

    from sentryfab.remote.hostkeys import AcceptNew, HostKeyError

    f = tmp_path / "known_hosts"
    f.write_text(f"@cert-authority *.example.net,10.1.* ssh-ed25519 {PUB}\n")
    known = KnownHosts([f])
    assert known.warnings == [
        f"{f}:1: @cert-authority lines are not supported by sentryfab: hosts matching "
        "*.example.net,10.1.* need their own key line (ssh-keyscan), and --accept-new will "
        "not record them"]
    record = tmp_path / "recorded"
    with pytest.raises(HostKeyError, match=r"web-1.example.net is known through an "
                                           r"@cert-authority line"):
        AcceptNew(record, known).missing_host_key(paramiko.SSHClient(), "web-1.example.net",
                                                  _key())
    with pytest.raises(HostKeyError, match="cert-authority"):
        AcceptNew(record, known).missing_host_key(paramiko.SSHClient(), "[10.1.2.3]:2222",
                                                  _key())
    assert not record.exists()
    AcceptNew(record, known).missing_host_key(paramiko.SSHClient(), "10.2.0.1", _key())
    assert record.read_text() == f"10.2.0.1 ssh-ed25519 {PUB}\n"

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

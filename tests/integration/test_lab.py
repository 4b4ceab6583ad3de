"""The lab itself: real hosts with their own names, sshd, Docker engine and private dirs."""

from __future__ import annotations

import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sentryfab import lab as lab_api
from sentryfab.lab.topology import HOSTS_ROOT, find_host

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]


def ssh(address: str, command: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """The plain OpenSSH client with the lab's key and strict host-key checking."""
    return subprocess.run(
        ["ssh", "-i", "lab/id_ed25519", "-o", "UserKnownHostsFile=lab/known_hosts",
         "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
         f"root@{address}", command],
        cwd=REPO, capture_output=True, text=True, timeout=timeout)


def scale_count() -> int:
    return sum(1 for s in lab_api.status() if s.name.startswith("scale-"))


def test_every_host_answers_ssh_with_its_own_name(lab):
    hosts = [find_host(s.name) for s in lab_api.status()]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda h: ssh(h.address, "hostname"), hosts))
    assert {h.name: r.stdout.strip() for h, r in zip(hosts, results, strict=True)} == {
        h.name: h.name for h in hosts}


def test_role_host_has_its_own_docker_engine_with_the_base_image(lab):
    result = ssh(find_host("db-1").address,
                 "docker info --format '{{.DockerRootDir}}' && "
                 "docker image inspect --format '{{.RepoTags}}' lab/base:1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [str(HOSTS_ROOT / "db-1" / "docker"), "[lab/base:1]"]


def test_etc_sentryfab_is_private_to_each_host(lab):
    name = f"lab-test-{uuid.uuid4().hex[:8]}"
    web1, db1 = find_host("web-1"), find_host("db-1")
    try:
        assert ssh(web1.address, f"echo web-1 > /etc/sentryfab/{name}").returncode == 0
        assert (web1.paths.etc / name).read_text() == "web-1\n"
        assert not (db1.paths.etc / name).exists()
        assert not Path("/etc/sentryfab", name).exists()
        assert ssh(db1.address, f"test -e /etc/sentryfab/{name}").returncode == 1
    finally:
        (web1.paths.etc / name).unlink(missing_ok=True)


def test_up_again_changes_nothing(lab):
    before = {s.name: (s.sshd_pid, s.dockerd_pid) for s in lab_api.status()}
    report = lab_api.up(scale_count(), REPO)
    assert [(h.name, h.actions) for h in report.hosts if h.actions] == []
    assert report.lab_actions == ()
    assert {s.name: (s.sshd_pid, s.dockerd_pid) for s in lab_api.status()} == before


def test_stop_sshd_then_start_host_restarts_only_sshd(lab):
    web2 = find_host("web-2")
    dockerd_before = next(s.dockerd_pid for s in lab_api.status() if s.name == "web-2")
    assert lab_api.stop_sshd("web-2") is True
    assert ssh(web2.address, "hostname").returncode == 255  # connection refused
    report = lab_api.start_host("web-2")
    assert report.actions == ("restarted sshd",)
    assert ssh(web2.address, "hostname").stdout == "web-2\n"
    after = next(s for s in lab_api.status() if s.name == "web-2")
    assert after.healthy and after.dockerd_pid == dockerd_before


def test_a_host_without_dockerd_starts_over(lab):
    if scale_count() == 0:
        pytest.skip("no scale hosts in this lab")
    assert lab_api.stop_sshd("scale-1") is True
    assert lab_api.start_host("scale-1").actions == ("started sshd",)
    assert ssh(find_host("scale-1").address, "hostname").stdout == "scale-1\n"


def test_hosts_reach_each_other_over_the_bridge(lab):
    db1 = find_host("db-1")
    result = ssh(find_host("web-1").address,
                 f"timeout 3 bash -c '</dev/tcp/{db1.address}/22' && echo reached")
    assert result.stdout == "reached\n", result.stderr

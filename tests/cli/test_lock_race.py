"""Racing deploys on this machine's own shell: eight `acquire_command`s at once, ten rounds
(a race wants repetitions; real processes make it slower than a unit test)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from sentryfab.procedures import lock
from tests.cli.test_state_files_in_a_real_shell import here
from tests.unit.test_lock import info


def test_racing_deploys_one_wins_and_the_others_see_who(tmp_path):
    for round_ in range(10):
        root = tmp_path / str(round_)
        with ThreadPoolExecutor(8) as pool:
            outs = list(pool.map(lambda i, r=root: here(lock.acquire_command(info(f"t{i}")), r),
                                 range(8)))
        winners = [o for o in outs if o.returncode == 0]
        losers = [o for o in outs if o.returncode == lock.HELD]
        assert len(winners) == 1 and len(losers) == 7, [o.stderr for o in outs]
        held = json.loads((root / "deploy.lock" / "info").read_text())
        for o in losers:  # never "held by None": the info is there before the lock is
            assert lock.parse_info(o.stdout) == lock.LockInfo(**held)
        assert [p.name for p in root.iterdir()] == ["deploy.lock"]  # no temp folder left

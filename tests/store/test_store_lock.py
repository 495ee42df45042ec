"""One runner per folder, across processes: the lock names its holder and dies with it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runner.errors import UsageError
from runner.store.lock import LOCK_NAME, release_folder_lock, take_folder_lock


def test_another_process_holding_the_folder_is_named_and_its_death_frees_it(
    tmp_path: Path,
) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from runner.store.lock import take_folder_lock
        held = take_folder_lock(Path({str(tmp_path)!r}), Path({str(tmp_path)!r}))
        print("locked", flush=True)
        sys.stdin.read()
        """
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(UsageError) as caught:
            take_folder_lock(tmp_path, tmp_path / "out")
        assert str(caught.value) == (
            f"{tmp_path / 'out'} is in use by another runner process (pid {holder.pid}); "
            "wait for it to finish or use --out elsewhere"
        )
    finally:
        holder.kill()
        holder.wait(timeout=60)
    # Killed without releasing: the OS dropped the lock with the process.
    lock = take_folder_lock(tmp_path, tmp_path)
    try:
        assert (tmp_path / LOCK_NAME).read_text(encoding="ascii") == str(os.getpid())
    finally:
        release_folder_lock(lock)
    release_folder_lock(take_folder_lock(tmp_path, tmp_path))

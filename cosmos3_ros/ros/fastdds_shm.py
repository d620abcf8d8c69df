"""Fast DDS's shared-memory files under /dev/shm: list them, and remove the ones no live process uses.

Fast DDS keeps its shared-memory segments and port queues (with their mutexes and semaphores) as files in
/dev/shm. A process killed without cleanup leaves them behind, and Fast DDS 2.14 can spin or block on such a
port in every later participant of the machine, whatever the domain id (``fastrtps_port7000`` is shared by all).
The test sessions and the DDS measurement script clean up with these before and after they run. No rclpy here.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

SHM_DIR = Path("/dev/shm")
# Fast DDS shared-memory transport files: segments, port queues and their mutexes / semaphores.
_FASTDDS_SHM = re.compile(r"^(sem\.)?fast(rtps|dds)_")


def fastdds_shm_files() -> set[str]:
    """Names of Fast DDS shared-memory files under /dev/shm now."""
    if not SHM_DIR.is_dir():
        return set()
    return {p.name for p in SHM_DIR.iterdir() if _FASTDDS_SHM.match(p.name)}


def _mapped_shm_names() -> set[str]:
    """Names under /dev/shm some live process maps or holds open (so they are not ours to delete)."""
    names: set[str] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for line in (proc / "maps").read_text().splitlines():
                if "/dev/shm/" in line:
                    names.add(line.rsplit("/dev/shm/", 1)[1].split(" ")[0])
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("/dev/shm/"):
                        names.add(target[len("/dev/shm/"):])
    return names


def remove_fastdds_shm(before: set[str]) -> list[str]:
    """Remove Fast DDS files created since ``before`` that no live process uses; returns the names removed."""
    in_use = _mapped_shm_names()
    removed = []
    for name in sorted(fastdds_shm_files() - before):
        # A port file's companion mutex / semaphore is named after it; keep both while the port is in use.
        base = name.removeprefix("sem.").removesuffix("_el").removesuffix("_mutex")
        if name in in_use or any(u.startswith(base) for u in in_use):
            continue
        with contextlib.suppress(FileNotFoundError):
            (SHM_DIR / name).unlink()
            removed.append(name)
    return removed

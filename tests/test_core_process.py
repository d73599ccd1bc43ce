"""core.process.set_name: a cnirun process's name as ps and the kernel's accounting see it; engine-free."""
from __future__ import annotations

import os

from cnirun.core.process import set_name


def test_set_name_is_the_process_name_cut_to_15_bytes() -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            set_name("cnirun-attach")
            with open("/proc/self/comm") as f:
                first = f.read().strip()
            set_name("a-name-longer-than-fifteen")
            with open("/proc/self/comm") as f:
                os.write(w, f"{first} {f.read().strip()}".encode())
        finally:
            os._exit(0)
    os.close(w)
    said = os.read(r, 100).decode()
    os.close(r)
    os.waitpid(pid, 0)
    assert said == "cnirun-attach a-name-longer-t"

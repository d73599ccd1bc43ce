"""Following the containers' output, each line prefixed like compose's: `name  | line`."""
from __future__ import annotations

import os
import threading
from typing import Any


class LogPrinter:
    """Follows every container's output, each line prefixed like compose: `name  | line`."""

    def __init__(self, eng: Any, width: int) -> None:
        self.eng = eng
        self.width = width
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    def follow(self, name: str, cid: str) -> None:
        t = threading.Thread(target=self._pump, args=(name, cid), daemon=True)
        t.start()
        self.threads.append(t)

    def _pump(self, name: str, cid: str) -> None:
        prefix = f"{name.ljust(self.width)}  | ".encode()
        buf = b""
        for chunk in self.eng.logs(cid):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            with self.lock:
                for line in lines:
                    os.write(1, prefix + line + b"\n")
        if buf:
            with self.lock:
                os.write(1, prefix + buf + b"\n")

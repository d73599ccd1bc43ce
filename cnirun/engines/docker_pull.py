"""Docker image pulls, shared by both Docker clients: references, errors in the stream, and progress.

dockerd's pull (POST /images/create) answers HTTP 200 and then a stream of
JSON messages; a failure is an `error` message in it. On a terminal the
progress is drawn as the docker CLI draws it (one line per layer, redrawn
in place); elsewhere nothing is drawn.
"""
from __future__ import annotations

from typing import Any

from ..core.errors import EngineError


def split_image(image: str) -> tuple[str, str]:
    """'busybox' -> ('busybox', 'latest'); 'reg:5000/a/b:1' -> ('reg:5000/a/b', '1'); digests stay whole.

    Without a tag dockerd would pull every tag of the repository.
    """
    if "@" in image:
        return image, ""
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon + 1:]
    return image, "latest"


def raise_pull_error(image: str, msg: dict[str, Any]) -> None:
    err = msg.get("error") or (msg.get("errorDetail") or {}).get("message")
    if err:
        raise EngineError(f"docker pull {image}: {err}")


class PullDisplay:
    """Docker's pull progress: on a terminal one line per layer, redrawn in place (as the docker CLI);
    elsewhere nothing (a log gets the one 'Unable to find image' line and, on failure, the error).
    """

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.ids: list[str] = []

    def __call__(self, msg: dict[str, Any]) -> None:
        if not self.tty:
            return
        text = " ".join(str(x) for x in (msg.get("status", ""), msg.get("progress", "")) if x)
        lid = str(msg.get("id") or "")
        w = self.stream.write
        if not lid:
            w(text + "\n")
        elif lid in self.ids:
            up = len(self.ids) - self.ids.index(lid)
            w(f"\x1b[{up}A\r\x1b[2K{lid}: {text}\r\x1b[{up}B")
        else:
            self.ids.append(lid)
            w(f"{lid}: {text}\n")
        self.stream.flush()

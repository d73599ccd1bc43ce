"""hooks.d files for Podman and CRI-O (containers/common schema 1.0.0).

The templates in the repository's hooks/ directory (installed under
<prefix>/share/cnirun/hooks) fix the stages, the `when` condition (the
cnirun.networks annotation) and the timeouts; `install` fills in the command
line of this installation's hook and the environment in effect now, because
the engine gives a hook no environment of its own.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Mapping

from .errors import CNIError
from .fsutil import atomic_write

DEFAULT_HOOKS_DIR = "/etc/containers/oci/hooks.d"
TEMPLATES = ("cnirun-attach.json", "cnirun-detach.json")


class HooksError(CNIError):
    """Writing or removing hooks.d files failed."""


def templates_dir() -> Path:
    """hooks/ beside the package (source tree, editable install) or under sys.prefix."""
    for c in (
        Path(__file__).resolve().parent.parent / "hooks",
        Path(sys.prefix) / "share" / "cnirun" / "hooks",
    ):
        if all((c / t).is_file() for t in TEMPLATES):
            return c
    raise HooksError("the hooks.d templates (hooks/cnirun-attach.json) are missing: reinstall cnirun")


def render(template: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """A template with this installation's hook command and the recorded environment."""
    from .hook import hook_argv, hook_env

    stages = template.get("stages") or []
    if len(stages) != 1:
        raise HooksError("a hooks.d template must name exactly one stage")
    out = json.loads(json.dumps(template))
    argv = hook_argv(stages[0])
    out["hook"]["path"] = argv[0]
    out["hook"]["args"] = argv
    out["hook"]["env"] = hook_env(environ)
    return out


def install(directory: str = DEFAULT_HOOKS_DIR, environ: Mapping[str, str] | None = None) -> list[str]:
    """Write the hooks.d files into `directory`; returns their paths."""
    from .docker_runtime import _abs_env

    env = _abs_env(os.environ if environ is None else environ)
    src = templates_dir()
    written: list[str] = []
    try:
        os.makedirs(directory, mode=0o755, exist_ok=True)
        for name in TEMPLATES:
            with open(src / name, "rb") as f:
                data = render(json.load(f), env)
            target = os.path.join(directory, name)
            atomic_write(target, (json.dumps(data, indent=2) + "\n").encode(), 0o644, fsync=False)
            written.append(target)
    except OSError as e:
        raise HooksError(f"cannot write hooks into {directory}: {e.strerror}: run as root or pass --dir") from None
    return written


def uninstall(directory: str = DEFAULT_HOOKS_DIR) -> list[str]:
    """Remove cnirun's hooks.d files from `directory`; returns the removed paths."""
    removed: list[str] = []
    for name in TEMPLATES:
        path = os.path.join(directory, name)
        try:
            os.unlink(path)
            removed.append(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise HooksError(f"cannot remove {path}: {e.strerror}: run as root") from None
    return removed

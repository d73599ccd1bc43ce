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


SEARCH_DIRS = ("/usr/share/containers/oci/hooks.d", DEFAULT_HOOKS_DIR)


def installed_envs(directories: tuple[str, ...] = SEARCH_DIRS) -> list[dict[str, str]]:
    """The environment recorded in each installed cnirun hooks.d file (for `cnirun ps` and gc)."""
    out: list[dict[str, str]] = []
    for d in directories:
        try:
            with open(os.path.join(d, TEMPLATES[0]), "rb") as f:
                hook = json.load(f).get("hook") or {}
        except (OSError, ValueError, AttributeError):
            continue
        env = dict(e.split("=", 1) for e in hook.get("env") or [] if isinstance(e, str) and "=" in e)
        out.append(env)
    return out


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


# Podman 4.x reads only /usr/share/containers/oci/hooks.d unless containers.conf
# sets `hooks_dir` (seen with Debian's podman 4.3: `--log-level=debug` says
# "reading hooks from /usr/share/containers/oci/hooks.d" and nothing else).
# So installing into the default /etc dir alone would do nothing for a plain
# `podman run`: a containers.conf drop-in adds /etc's dir to the list.
CONTAINERS_CONF_FILES = ("/usr/share/containers/containers.conf", "/etc/containers/containers.conf")
CONTAINERS_CONF_D = "/etc/containers/containers.conf.d"
PODMAN_DROPIN = os.path.join(CONTAINERS_CONF_D, "60-cnirun-hooks-dir.conf")
_DROPIN_MARK = "# Written by `cnirun install hooks`"


def _hooks_dir_configured(exclude: str) -> bool:
    """Whether some containers.conf already sets hooks_dir (then it is the user's choice)."""
    files = list(CONTAINERS_CONF_FILES)
    try:
        files += [os.path.join(CONTAINERS_CONF_D, n) for n in sorted(os.listdir(CONTAINERS_CONF_D)) if n.endswith(".conf")]
    except OSError:
        pass
    for path in files:
        if os.path.abspath(path) == os.path.abspath(exclude):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                if any(line.strip().startswith("hooks_dir") for line in f):
                    return True
        except OSError:
            continue
    return False


def podman_reads(directory: str, dropin: str = PODMAN_DROPIN) -> str:
    """Make Podman read `directory` by default when it would not; returns the drop-in written ('' if none).

    Only for the default /etc directory (a custom one is what `podman
    --hooks-dir DIR` is for), only when podman is installed, and never over a
    hooks_dir the user configured.
    """
    import shutil

    if os.path.abspath(directory) != DEFAULT_HOOKS_DIR or shutil.which("podman") is None:
        return ""
    if _hooks_dir_configured(exclude=dropin):
        return ""
    text = (
        f"{_DROPIN_MARK}: Podman reads only the first of these by default.\n"
        "# `cnirun uninstall hooks` removes this file.\n"
        "[engine]\n"
        f'hooks_dir = ["/usr/share/containers/oci/hooks.d", "{DEFAULT_HOOKS_DIR}"]\n'
    )
    try:
        os.makedirs(os.path.dirname(dropin), mode=0o755, exist_ok=True)
        atomic_write(dropin, text.encode(), 0o644, fsync=False)
    except OSError as e:
        raise HooksError(f"cannot write {dropin}: {e.strerror}: run as root") from None
    return dropin


def forget_podman_dropin(dropin: str = PODMAN_DROPIN) -> str:
    """Remove the drop-in `podman_reads` wrote (only ours); returns its path if removed."""
    try:
        with open(dropin, encoding="utf-8") as f:
            if not f.read().startswith(_DROPIN_MARK):
                return ""
        os.unlink(dropin)
    except OSError:
        return ""
    return dropin

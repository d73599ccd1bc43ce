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

from ...core.errors import CNIError
from ...core.fsutil import atomic_write
from ...core.paths import PACKAGE_PARENT

DEFAULT_HOOKS_DIR = "/etc/containers/oci/hooks.d"
TEMPLATES = ("cnirun-attach.json", "cnirun-detach.json")


class HooksError(CNIError):
    """Writing or removing hooks.d files failed."""


def templates_dir() -> Path:
    """hooks/ beside the package (source tree, editable install) or under sys.prefix."""
    for c in (
        Path(PACKAGE_PARENT).resolve() / "hooks",
        Path(sys.prefix) / "share" / "cnirun" / "hooks",
    ):
        if all((c / t).is_file() for t in TEMPLATES):
            return c
    raise HooksError("the hooks.d templates (hooks/cnirun-attach.json) are missing: reinstall cnirun")


def render(template: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """A template with this installation's hook command and the recorded environment."""
    from ..argv import hook_argv, hook_env

    stages = template.get("stages") or []
    if len(stages) != 1:
        raise HooksError("a hooks.d template must name exactly one stage")
    out = json.loads(json.dumps(template))
    argv = hook_argv(stages[0])
    out["hook"]["path"] = argv[0]
    out["hook"]["args"] = argv
    out["hook"]["env"] = hook_env(environ)
    return out


CREATED_MARK = ".cnirun-created-dirs"  # not *.json: engines read only those from hooks.d


def _missing_dirs(directory: str) -> list[str]:
    """`directory` and those of its parents that do not exist yet, deepest first."""
    out: list[str] = []
    d = os.path.abspath(directory)
    while not os.path.exists(d):
        out.append(d)
        parent = os.path.dirname(d)
        if parent == d:
            break
        d = parent
    return out


def install(
    directory: str = DEFAULT_HOOKS_DIR,
    environ: Mapping[str, str] | None = None,
    force: bool = False,
    warnings: list[str] | None = None,
) -> list[str]:
    """Write the hooks.d files into `directory`; returns their paths.

    Refuses an unsafe environment or `directory` (docker_runtime.checked_env:
    the engine runs the hooks it finds there as root) unless `force`; then the
    problems are appended to `warnings`. The directories
    it had to create are listed in CREATED_MARK, for uninstall.
    """
    from .docker_runtime import checked_env

    env, problems = checked_env(os.environ if environ is None else environ, force, directory)
    if warnings is not None:
        warnings.extend(problems)
    src = templates_dir()
    written: list[str] = []
    try:
        created = _missing_dirs(directory)
        os.makedirs(directory, mode=0o755, exist_ok=True)
        if created:
            atomic_write(os.path.join(directory, CREATED_MARK), ("\n".join(created) + "\n").encode(), 0o644, fsync=False)
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
    forget_created_dirs(directory)
    return removed


def forget_created_dirs(directory: str) -> list[str]:
    """Remove the directories install created for `directory` (CREATED_MARK), those that are empty."""
    mark = os.path.join(directory, CREATED_MARK)
    try:
        with open(mark, encoding="utf-8") as f:
            created = [line.strip() for line in f if line.strip()]
        os.unlink(mark)
    except OSError:
        return []
    removed: list[str] = []
    for d in created:  # deepest first, as recorded
        if not os.path.isabs(d):
            continue
        try:
            os.rmdir(d)  # only when empty: someone else's files stay, and so does the directory
            removed.append(d)
        except OSError:
            continue  # not empty (or not ours any more): its parents stay too, as they are not empty
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
        created = _missing_dirs(os.path.dirname(dropin))
        os.makedirs(os.path.dirname(dropin), mode=0o755, exist_ok=True)
        atomic_write(dropin, text.encode(), 0o644, fsync=False)
        if created:  # uninstall removes them again (forget_created_dirs)
            with open(os.path.join(directory, CREATED_MARK), "a", encoding="utf-8") as f:
                f.write("\n".join(created) + "\n")
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

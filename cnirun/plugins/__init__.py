"""CNI plugins written with :mod:`cnirun.cni.skel`, and a helper to install them.

* :mod:`cnirun.plugins.noop`: a recording test double (like upstream's noop).
* :mod:`cnirun.plugins.sysctl`: a small real chained plugin that sets net.*
  sysctls inside the container's network namespace.
* :mod:`cnirun.plugins.flannel`: flannel's CNI plugin (subnet.env from
  `cnirun overlay agent` or flanneld, delegating to bridge + host-local).
* :mod:`cnirun.plugins.isolation`: bridge port isolation (no traffic between
  the containers of one network: compose's enable_icc=false).
* :mod:`cnirun.plugins.policy` (type cnirun-policy): per-container firewall
  policies (the firewallPolicy capability), in the container's netns.

A runtime finds a plugin as an executable file named after its ``type`` in
a CNI_PATH directory. :func:`own_plugin_dir` is a directory of ready-to-run
launchers for the real plugins (cnirun/plugins/bin, in the source tree);
:func:`install_plugins` writes launchers bound to this interpreter into a
directory other runtimes search (/opt/cni/bin), :func:`install_plugin_script`
one such file.
"""
from __future__ import annotations

import os
import sys
TYPE_CHECKING = False
if TYPE_CHECKING:  # pathlib is only needed when a launcher is written
    from pathlib import Path

__all__ = ["install_plugin_script", "own_plugin_dir", "install_plugins", "uninstall_plugins", "PLUGINS"]

#: The plugins cnirun ships for real use (noop is a test double), by type.
PLUGINS = {"flannel": "cnirun.plugins.flannel", "sysctl": "cnirun.plugins.sysctl",
           "isolation": "cnirun.plugins.isolation", "cnirun-policy": "cnirun.plugins.policy"}
LAUNCHER_MARK = "# CNI plugin launcher written by cnirun.plugins.install_plugin_script"
DEFAULT_INSTALL_DIR = "/opt/cni/bin"


def own_plugin_dir() -> str:
    """cnirun/plugins/bin: launchers of PLUGINS that run in place (no install step; invoke searches it last)."""
    from ..cni.invoke import OWN_PLUGIN_DIR

    return OWN_PLUGIN_DIR


def install_plugin_script(dirpath: str | os.PathLike, type_name: str, module: str) -> "Path":
    """Write an executable launcher `<dirpath>/<type_name>` that runs `module`.

    The launcher runs ``<module>.main()`` with this interpreter
    (``sys.executable``) and exits with its return value; it puts the
    directory holding the ``cnirun`` package first on ``sys.path`` so it
    works without cnirun being installed.  The file is written to a
    temporary name and renamed into place (rewriting a plugin that is being
    executed never hits "text file busy"), mode 0755.  Returns its path.
    """
    from pathlib import Path

    from ..core.fsutil import atomic_write

    if not type_name or "/" in type_name or "\\" in type_name or type_name in (".", ".."):
        raise ValueError(f"invalid plugin type name {type_name!r}")
    if not module or not all(part.isidentifier() for part in module.split(".")):
        raise ValueError(f"invalid module name {module!r}")
    pkg_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    directory = Path(dirpath)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / type_name
    text = (
        f"#!{sys.executable}\n"
        f"# CNI plugin launcher written by cnirun.plugins.install_plugin_script\n"
        f"import sys\n"
        f"sys.path.insert(0, {pkg_parent!r})\n"
        f"from {module} import main\n"
        f"raise SystemExit(main())\n"
    )
    # Rename into place: rewriting a plugin that is being executed never hits "text file busy".
    atomic_write(target, text.encode(), 0o755, fsync=False)
    return target


def _is_ours(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return False
    return LAUNCHER_MARK.encode() in head


def install_plugins(directory: str = DEFAULT_INSTALL_DIR, force: bool = False,
                    warnings: list[str] | None = None) -> list[str]:
    """Write a launcher for each of PLUGINS into `directory`; returns their paths.

    Root runs what is there: a relative directory, or one (or a parent)
    others than root can write, is refused, and so is a cnirun source tree
    others can write (the launchers import from it); `force` installs anyway
    and appends the problems to `warnings`. A file of the same name that
    cnirun did not write (e.g. flannel-io's own flannel binary) is left alone
    unless `force`.
    """
    from ..core.fsutil import unsafe_dir
    from ..core.errors import CNIError

    if not os.path.isabs(directory):
        raise CNIError(f"--dir {directory!r} is relative: give an absolute directory")
    problems = []
    for what, path in (("--dir", directory),
                       ("the cnirun package", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))):
        why = unsafe_dir(path)
        if why:
            problems.append(f"{what}: {why}")
    foreign = [n for n in PLUGINS if os.path.lexists(os.path.join(directory, n))
               and not _is_ours(os.path.join(directory, n))]
    problems += [f"{os.path.join(directory, n)} exists and was not written by cnirun" for n in foreign]
    if problems and not force:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise CNIError(f"refusing to install plugins: {problems[0]}{more}: fix it, or pass --force")
    if warnings is not None:
        warnings.extend(problems)
    try:
        return [str(install_plugin_script(directory, name, module)) for name, module in PLUGINS.items()]
    except OSError as e:
        raise CNIError(f"cannot write plugins into {directory}: {e.strerror}: run as root or pass --dir") from None


def uninstall_plugins(directory: str = DEFAULT_INSTALL_DIR) -> list[str]:
    """Remove the launchers install_plugins wrote (only files cnirun wrote); returns their paths."""
    from ..core.errors import CNIError

    removed = []
    for name in PLUGINS:
        path = os.path.join(directory, name)
        if os.path.isfile(path) and not os.path.islink(path) and _is_ours(path):
            try:
                os.unlink(path)
            except OSError as e:
                raise CNIError(f"cannot remove {path}: {e.strerror}") from None
            removed.append(path)
    return removed

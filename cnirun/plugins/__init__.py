"""CNI plugins written with :mod:`cnirun.skel`, and a helper to install them.

* :mod:`cnirun.plugins.noop`: a recording test double (like upstream's noop).
* :mod:`cnirun.plugins.sysctl`: a small real chained plugin that sets net.*
  sysctls inside the container's network namespace.

A runtime finds a plugin as an executable file named after its ``type`` in
a CNI_PATH directory; :func:`install_plugin_script` writes such a file.
"""
from __future__ import annotations

import os
import sys
TYPE_CHECKING = False
if TYPE_CHECKING:  # pathlib is only needed when a launcher is written
    from pathlib import Path

__all__ = ["install_plugin_script"]


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

    from ..fsutil import atomic_write

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

"""The OCI hook's old module path, kept for installs made before the hook moved to cnirun.oci.hook.

hooks.d files written by `cnirun install` (`from cnirun.hook import
run_process`) and cnirun-hook launchers (`from cnirun.hook import main`)
made before the move import this module; new installs name cnirun.oci.hook.
Nothing else may import it.
"""
from .oci.hook import main, run_process

__all__ = ["main", "run_process"]

if __name__ == "__main__":
    import sys

    sys.exit(main())

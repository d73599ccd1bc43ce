"""The Docker runtime shim's old module path, kept for installs made before it moved to cnirun.oci.shim.

The docker-runtime launcher written by `cnirun install docker-runtime`
before the move runs `from cnirun.shim import main` and `from cnirun.shim
import delete_main`; the cnirun-shim launcher imports `main`. New installs
name cnirun.oci.shim. Nothing else may import it.
"""
from .oci.shim import delete_main, main

__all__ = ["delete_main", "main"]

if __name__ == "__main__":
    import sys

    sys.exit(main())

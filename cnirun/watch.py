"""The watcher's old module path, kept for processes started before it moved to cnirun.run.watch.

A supervisor started before the move (`python -m cnirun.watch supervise`)
starts its workers as `python -m cnirun.watch worker`, and `python -m
cnirun.watch resolvers` is the DNS keeper such a process starts; they run
cnirun.run.watch. New processes are started under the new path. Nothing
else may import it.
"""
import sys

from .run.watch import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

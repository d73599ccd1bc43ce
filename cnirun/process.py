"""Process endings' old module path, kept for installs made before it moved to cnirun.core.process.

The docker-runtime launcher written before the move runs `from
cnirun.process import exit_now` on every `runc delete`. New installs name
cnirun.core.process. Nothing else may import it.
"""
from .core.process import exit_now

__all__ = ["exit_now"]

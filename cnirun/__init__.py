"""cnirun: run containers on CNI networks, on top of a complete CNI runtime in Python.

The library API is importable from here; each name is loaded on first use
(module ``__getattr__``), so ``import cnirun`` costs nothing and the OCI hook
path never pays for what it does not use::

    from cnirun import CNI, RuntimeConf

    cni = CNI(netconf_path="/etc/cni/net.d")     # CNI_PATH, NETCONFPATH, CNI_CACHE_DIR...
    net = cni.network("mynet")                    # a NetworkConfigList
    rt = RuntimeConf("ctr1", netns="/run/netns/ctr1", ifname="eth0",
                     capability_args={"portMappings": [...]})
    result = cni.add(net, rt)                     # the final result, as a dict
    cni.check(net, rt)
    cni.delete("mynet", rt)                       # from the cache, in reverse order
    errors = cni.gc(net, valid=[("ctr2", "eth0")])
    cni.status(net); cni.validate(net)

Errors are :class:`CNIError` subclasses carrying a CNI error ``code``
(PluginError also has ``plugin``, ``network``, ``command``, ``msg``,
``details``). :class:`Result` parses and converts results of every spec
version (0.1.0 to 1.1.0).
"""
from __future__ import annotations

TYPE_CHECKING = False  # start-up cost: see cnirun.core

# public name -> module that defines it
_LAZY = {
    "CNI": "cnirun.cni.runtime",
    "RuntimeConf": "cnirun.cni.runtime_conf",
    "NetworkConfigList": "cnirun.cni.config",
    "PluginConf": "cnirun.cni.config",
    "Result": "cnirun.cni.result",
    "Attachment": "cnirun.network.attachment",
    "attach": "cnirun.network.lifecycle",
    "detach": "cnirun.network.lifecycle",
    "CNIError": "cnirun.core.errors",
    "ConfigError": "cnirun.core.errors",
    "NetworkNotFound": "cnirun.core.errors",
    "VersionError": "cnirun.core.errors",
    "ArgumentError": "cnirun.core.errors",
    "NetnsError": "cnirun.core.errors",
    "CacheError": "cnirun.core.errors",
    "PluginNotFound": "cnirun.core.errors",
    "PluginError": "cnirun.core.errors",
    "PluginTimeout": "cnirun.core.errors",
    "LockError": "cnirun.core.errors",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # for type checkers and IDEs; nothing is imported at run time
    from .network.attachment import Attachment
    from .network.lifecycle import attach, detach
    from .cni.config import NetworkConfigList, PluginConf
    from .core.errors import (
        ArgumentError,
        CacheError,
        CNIError,
        ConfigError,
        LockError,
        NetnsError,
        NetworkNotFound,
        PluginError,
        PluginNotFound,
        PluginTimeout,
        VersionError,
    )
    from .cni.result import Result
    from .cni.runtime import CNI
    from .cni.runtime_conf import RuntimeConf


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cnirun' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

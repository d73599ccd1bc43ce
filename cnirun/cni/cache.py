"""The result cache, in libcni's on-disk format.

`<cache_dir>/results/<network>-<containerID>-<ifname>` holds a JSON object of
kind "cniCacheV1" with the raw config list (base64), the runtime arguments and
the final ADD result. A libcni-based runtime can DEL what cnirun added and
the other way round, because both read and write the same files.
"""
from __future__ import annotations

import binascii
import os

from ..core import jsonfast as json
from .config import path_str
from ..core.errors import CacheError
from ..core.fsutil import TMP_PREFIX, atomic_write
from ..core.value import Value

# No base64 (it imports re), dataclasses, pathlib or typing: every OCI hook
# run reads and writes the cache. Paths are strings inside; the public
# functions that always returned pathlib.Path still do (importing it then).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

DEFAULT_CACHE_DIR = "/var/lib/cni"
CACHE_KIND = "cniCacheV1"
# cnirun's intent record: an ADD in progress (see CachedAttachment.pending).
# libcni ignores keys it does not know, so the file stays libcni's format.
PENDING_KEY = "cnirun.dev/pending"


def default_cache_dir() -> str:
    """CNI_CACHE_DIR, else libcni's default /var/lib/cni (a user's own: core.paths.cache_dir)."""
    from ..core.paths import cache_dir

    return cache_dir()


class CachedAttachment(Value):
    """One cached attachment: what DEL, CHECK and GC need long after ADD."""

    _fields = (
        "network_name", "container_id", "ifname", "config", "netns", "cni_args", "capability_args", "result", "path",
        "pending",
    )
    __match_args__ = _fields

    def __init__(
        self,
        network_name: str,
        container_id: str,
        ifname: str,
        config: bytes = b"",
        netns: str = "",
        cni_args: list[list[str]] | None = None,
        capability_args: dict[str, Any] | None = None,
        result: dict[str, Any] | None = None,
        path: str = "",
        pending: dict[str, int] | None = None,
    ) -> None:
        self.network_name = network_name
        self.container_id = container_id
        self.ifname = ifname
        self.config = config
        self.netns = netns
        self.cni_args = [] if cni_args is None else cni_args
        self.capability_args = {} if capability_args is None else capability_args
        self.result = result
        self.path = path
        # Set while ADD is in progress: written before the first plugin runs
        # and after each one, so a process killed part-way leaves a record
        # DEL can always finish from. {"started": plugins started, "pgid":
        # process group of the plugin running, "start": its start time}.
        # `result` then holds the partial result (what the last plugin returned).
        self.pending = pending

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": CACHE_KIND,
            "containerId": self.container_id,
            "config": binascii.b2a_base64(self.config, newline=False).decode(),  # base64.b64encode
            "ifName": self.ifname,
            "networkName": self.network_name,
        }
        # libcni omits empty optional fields; matching that keeps files identical.
        if self.netns:
            out["netns"] = self.netns
        if self.cni_args:
            out["cniArgs"] = self.cni_args
        # Go marshals these two as maps, so their keys come out sorted at every level.
        if self.capability_args:
            out["capabilityArgs"] = json.go_map_order(self.capability_args)
        if self.result is not None:
            out["result"] = json.go_map_order(self.result)
        if self.pending is not None:
            out[PENDING_KEY] = self.pending
        return out


def _results_dir(cache_dir: str) -> str:
    return path_str(os.path.join(cache_dir, "results"))


def _cache_file(cache_dir: str, network: str, container_id: str, ifname: str) -> str:
    return path_str(os.path.join(cache_dir, "results", f"{network}-{container_id}-{ifname}"))


def results_dir(cache_dir: str) -> Path:
    from pathlib import Path

    return Path(_results_dir(cache_dir))


def cache_path(cache_dir: str, network: str, container_id: str, ifname: str) -> Path:
    from pathlib import Path

    return Path(_cache_file(cache_dir, network, container_id, ifname))


def write(cache_dir: str, att: CachedAttachment) -> Path:
    """Write atomically (temp file + fsync + rename): a crash leaves the old file or the new one."""
    from pathlib import Path

    return Path(write_file(cache_dir, att))


def write_file(cache_dir: str, att: CachedAttachment, *, fsync: bool = True) -> str:
    """write(), returning the path as a string (no pathlib import: the hook path).

    fsync=False for the intent records written during ADD: they must survive
    the process being killed (the page cache does), not a power loss (which
    takes the netns, the veths and the plugins' state with it anyway).
    """
    path = _cache_file(cache_dir, att.network_name, att.container_id, att.ifname)
    # Compact separators, as Go's json.Marshal writes them.
    data = json.dumps(att.to_dict(), separators=(",", ":")).encode()
    try:
        _make_dirs(cache_dir)
        atomic_write(path, data, 0o600, fsync=fsync)
    except PermissionError:
        raise CacheError(
            f"cache directory {cache_dir} is not writable: run as root or set CNI_CACHE_DIR to a writable directory"
        ) from None
    except OSError as e:
        raise CacheError(
            f"cannot write the result cache in {cache_dir}: {e.strerror}: set CNI_CACHE_DIR to a writable directory"
        ) from None
    att.path = path
    return path


def _make_dirs(cache_dir: str) -> None:
    """Create the cache dir and results/ with mode 0700 each, as libcni's MkdirAll(0700).

    (os.makedirs applies its mode only to the leaf since Python 3.7.)
    """
    for d in (path_str(cache_dir), _results_dir(cache_dir)):
        if not os.path.isdir(d):
            os.makedirs(os.path.dirname(d) or ".", exist_ok=True)
            try:
                os.mkdir(d, 0o700)
            except FileExistsError:
                if not os.path.isdir(d):
                    raise NotADirectoryError(20, "Not a directory", d) from None


def check_writable(cache_dir: str) -> None:
    """Fail before ADD, not after, when the cache cannot be written (nothing to undo then)."""
    d = _results_dir(cache_dir)
    try:
        _make_dirs(cache_dir)
    except OSError as e:
        raise CacheError(
            f"cache directory {cache_dir} is not usable ({e.strerror}): set CNI_CACHE_DIR to a writable directory"
        ) from None
    if not os.access(d, os.W_OK | os.X_OK):
        raise CacheError(
            f"cache directory {d} is not writable: run as root or set CNI_CACHE_DIR to a writable directory"
        )


def read_file(path: str | os.PathLike[str]) -> CachedAttachment:
    """Parse one cache file; a non-cniCacheV1 file is a legacy raw result (libcni's rule)."""
    p = path_str(path)
    try:
        with open(p, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise
    except OSError as e:
        raise CacheError(f"cannot read cache file {p}: {e.strerror}") from None
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CacheError(f"corrupt cache file {p}: not JSON") from None
    if not isinstance(obj, dict):
        raise CacheError(f"corrupt cache file {p}: not a JSON object")
    if obj.get("kind") != CACHE_KIND:
        # Legacy: the file is the result itself; the name gives the rest.
        return CachedAttachment(network_name="", container_id="", ifname="", result=obj, path=p)
    try:
        # base64.b64decode(..., validate=True), which is exactly this call
        config = binascii.a2b_base64(obj.get("config") or "", strict_mode=True)
    except ValueError:
        raise CacheError(f"corrupt cache file {p}: config is not base64") from None
    result = obj.get("result")
    if result is not None and not isinstance(result, dict):
        raise CacheError(f"corrupt cache file {p}: result is not an object")
    cni_args = obj.get("cniArgs") or []
    cap_args = obj.get("capabilityArgs") or {}
    pending = obj.get(PENDING_KEY)
    if pending is not None and not (
        isinstance(pending, dict) and all(isinstance(v, int) and not isinstance(v, bool) for v in pending.values())
    ):
        raise CacheError(f"corrupt cache file {p}: {PENDING_KEY} is not an object of numbers")
    if not isinstance(cni_args, list) or not isinstance(cap_args, dict):
        raise CacheError(f"corrupt cache file {p}: cniArgs or capabilityArgs has the wrong type")
    return CachedAttachment(
        network_name=str(obj.get("networkName", "")),
        container_id=str(obj.get("containerId", "")),
        ifname=str(obj.get("ifName", "")),
        config=config,
        netns=str(obj.get("netns", "")),
        cni_args=[list(map(str, kv)) for kv in cni_args if isinstance(kv, list) and len(kv) == 2],
        capability_args=cap_args,
        result=result,
        path=p,
        pending=pending,
    )


def read(cache_dir: str, network: str, container_id: str, ifname: str) -> CachedAttachment | None:
    """The cached attachment, None when there is none; CacheError when it is unreadable."""
    try:
        return read_file(_cache_file(cache_dir, network, container_id, ifname))
    except FileNotFoundError:
        return None


def delete(cache_dir: str, network: str, container_id: str, ifname: str) -> None:
    try:
        os.unlink(_cache_file(cache_dir, network, container_id, ifname))
    except FileNotFoundError:
        pass
    except OSError as e:
        raise CacheError(f"cannot remove cache file: {e.strerror}") from None


def list_attachments(
    cache_dir: str, network: str | None = None, container_id: str | None = None
) -> list[CachedAttachment]:
    """Every readable cniCacheV1 attachment (of one network, of one container), sorted by file name.

    Unreadable files are skipped here; DEL and GC deal with them by name.
    With `container_id`, only files whose name can be that container's
    (<network>-<id>-<ifname>) are read: the OCI hook's DEL-before-ADD must
    not parse every other container's cache file.
    """
    d = _results_dir(cache_dir)
    try:
        names = sorted(os.listdir(d))
    except FileNotFoundError:
        return []
    except OSError as e:
        raise CacheError(f"cannot list the result cache {d}: {e.strerror}") from None
    out: list[CachedAttachment] = []
    for n in names:
        if n.startswith(TMP_PREFIX):
            continue
        if network is not None and not n.startswith(network + "-"):
            continue
        if container_id is not None and f"-{container_id}-" not in n:
            continue
        try:
            att = read_file(os.path.join(d, n))
        except (CacheError, FileNotFoundError):
            continue
        if not att.network_name:  # legacy raw result: no way to know its attachment
            continue
        if network is not None and att.network_name != network:
            continue
        if container_id is not None and att.container_id != container_id:
            continue
        out.append(att)
    return out


def corrupt_files(cache_dir: str) -> list[Path]:
    """Cache files that cannot be parsed (shown by `cnirun gc`, removed by it)."""
    d = results_dir(cache_dir)
    bad: list[Path] = []
    try:
        names = sorted(os.listdir(d))
    except OSError:
        return bad
    for n in names:
        try:
            read_file(d / n)
        except CacheError:
            bad.append(d / n)
        except FileNotFoundError:
            pass
    return bad

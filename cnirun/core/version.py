"""CNI specification versions: parsing, ordering, selection and probing.

cnirun speaks every released spec version from 0.1.0 to 1.1.0.
"""
from __future__ import annotations

from .errors import VersionError

#: Every spec version a result or config may carry, oldest first.
SUPPORTED_VERSIONS: tuple[str, ...] = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
CURRENT = "1.1.0"


def parse(version: str) -> tuple[int, int, int]:
    """'0.3.1' -> (0, 3, 1); a missing minor or micro counts as 0, as libcni does."""
    # MAJOR[.MINOR[.MICRO]] of decimal digits, checked without `re` (hook path).
    parts = version.strip().split(".") if isinstance(version, str) else []
    if not 1 <= len(parts) <= 3 or not all(p and p.isdecimal() for p in parts):
        raise VersionError(f'invalid version "{version}": expected MAJOR.MINOR.MICRO such as "1.0.0"')
    nums = [int(p) for p in parts] + [0, 0]
    return (nums[0], nums[1], nums[2])


def compare(a: str, b: str) -> int:
    """-1, 0 or 1 as a is older than, equal to, or newer than b."""
    pa, pb = parse(a), parse(b)
    return (pa > pb) - (pa < pb)


def at_least(version: str, minimum: str) -> bool:
    return parse(version) >= parse(minimum)


def check_supported(version: str) -> str:
    """Return the version if cnirun knows it, else raise VersionError (code 1)."""
    if version not in SUPPORTED_VERSIONS:
        parse(version)  # a clear message for a malformed string
        raise VersionError(
            f'unsupported CNI version "{version}": cnirun supports {", ".join(SUPPORTED_VERSIONS)}'
        )
    return version


def select(cni_version: str | None, cni_versions: list[str] | None) -> str:
    """Pick the version a config list runs at, as libcni does.

    With a `cniVersions` list, the highest entry of cniVersions plus cniVersion
    that is not above what we support wins; a lone `cniVersion` is used as is.
    """
    if not cni_versions:
        if not cni_version:
            # libcni treats an absent version as 0.1.0 (the original spec had none)
            return "0.1.0"
        parse(cni_version)
        return cni_version
    candidates = list(cni_versions) + ([cni_version] if cni_version else [])
    best: str | None = None
    for v in candidates:
        if not isinstance(v, str):
            raise VersionError(f"invalid version {v!r} in cniVersions: expected a string")
        parse(v)
        if parse(v) > parse(CURRENT):
            continue
        if best is None or parse(v) > parse(best):
            best = v
    if best is None:
        raise VersionError(
            f"no supported version in cniVersions {cni_versions}: cnirun supports up to {CURRENT}"
        )
    return best


def plugin_supports(supported: list[str], version: str) -> bool:
    """True when a plugin's VERSION answer lists `version` (exact match, as libcni)."""
    return version in supported

"""Bandwidth policies: rates as people write them, and the `bandwidth` capability they become.

`--ingress-rate RATE[:BURST]` / `--egress-rate`, the cnirun.ingress-rate /
cnirun.egress-rate labels, compose's x-cni ingress_rate/egress_rate and
`cnirun update` all go through parse_rate; lifecycle.options_for and
lifecycle.set_bandwidth turn the rates into the bandwidth plugin's
capability (CONVENTIONS.md: ingressRate/egressRate in bits per second,
ingressBurst/egressBurst in bits).

RATE: a number and a tc unit, decimal: bit, kbit, mbit, gbit, tbit (bits per
second) or bps, kbps, mbps, gbps, tbps (bytes per second); binary: kibit,
mibit, gibit, tibit, kibps, mibps, gibps, tibps. BURST: a size as tc writes
it, binary: b, kb (k), mb (m), gb (g) in bytes, kbit, mbit, gbit in bits.

The host side the bandwidth plugin shapes (its qdiscs, its ifb): cnirun.cni.bandwidth.
"""
from __future__ import annotations


from ..core.errors import ArgumentError
from ..core.value import FrozenValue

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

NONE = "none"

_RATE_UNITS = {
    "bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9, "tbit": 10**12,
    "bps": 8, "kbps": 8 * 10**3, "mbps": 8 * 10**6, "gbps": 8 * 10**9, "tbps": 8 * 10**12,
    "kibit": 2**10, "mibit": 2**20, "gibit": 2**30, "tibit": 2**40,
    "kibps": 8 * 2**10, "mibps": 8 * 2**20, "gibps": 8 * 2**30, "tibps": 8 * 2**40,
}
# Burst sizes in bits, as tc reads them (k = 1024).
_SIZE_UNITS = {
    "b": 8, "k": 8 * 2**10, "kb": 8 * 2**10, "m": 8 * 2**20, "mb": 8 * 2**20, "g": 8 * 2**30, "gb": 8 * 2**30,
    "bit": 1, "kbit": 2**10, "mbit": 2**20, "gbit": 2**30,
}
MIN_RATE = 8 * 10**3  # 8 kbit/s: below it TBF's buffer arithmetic overflows
MAX_RATE = 10**12  # 1 tbit/s
# A burst must hold a full-size packet (else TBF never sends one) and fit the
# plugin's uint32 byte count.
MIN_BURST = 8 * 2048
MAX_BURST = 8 * (2**32 - 1)
DEFAULT_BURST_SECONDS = 0.02  # enough for TCP to reach the rate at a 250 Hz timer
DEFAULT_MIN_BURST = 8 * 32 * 2**10  # 32 KiB


class Rate(FrozenValue):
    """A rate limit: bits per second and a burst in bits."""

    _fields = ("rate", "burst")
    __match_args__ = _fields

    def __init__(self, rate: int, burst: int) -> None:
        object.__setattr__(self, "rate", rate)
        object.__setattr__(self, "burst", burst)

    def __str__(self) -> str:
        return f"{format_rate(self.rate)}:{format_size(self.burst)}"


def _number_unit(text: str) -> tuple[float, str] | None:
    i = 0
    while i < len(text) and (text[i].isdigit() or text[i] == "."):
        i += 1
    num, unit = text[:i], text[i:].lower()
    if not num or num.count(".") > 1 or num.startswith(".") or num.endswith(".") or not num.isascii():
        return None
    return float(num), unit


def _amount(text: str, units: dict[str, int], what: str, example: str) -> int:
    parsed = _number_unit(text)
    if parsed is None or parsed[1] not in units:
        raise ArgumentError(f"invalid {what} {text!r}: expected a number and a unit, e.g. {example}")
    return int(round(parsed[0] * units[parsed[1]]))


def default_burst(rate: int) -> int:
    kib = 8 * 2**10
    return max(DEFAULT_MIN_BURST, -(-int(rate * DEFAULT_BURST_SECONDS) // kib) * kib)  # whole KiB


def parse_rate(value: str, what: str = "rate") -> Rate:
    """'10mbit' or '10mbit:64kb' -> Rate; ArgumentError (one line) for anything else."""
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        raise ArgumentError(f"invalid {what} {value!r}: expected RATE[:BURST], e.g. 10mbit or 10mbit:64kb")
    text, sep, burst_text = value.strip().partition(":")
    rate = _amount(text, _RATE_UNITS, what, "10mbit, 500kbit, 1gbit or 2mbps (bytes/s)")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise ArgumentError(f"invalid {what} {value!r}: the rate must be between 8kbit and 1tbit")
    if not sep:
        return Rate(rate, default_burst(rate))
    burst = _amount(burst_text, _SIZE_UNITS, f"burst in {what}", "64kb, 1mb or 512kbit")
    if not MIN_BURST <= burst <= MAX_BURST:
        raise ArgumentError(f"invalid {what} {value!r}: the burst must be between 2kb (a full packet) and 4gb")
    return Rate(rate, burst)


def parse_rate_or_none(value: str, what: str) -> Rate | None:
    """`cnirun update`'s values: a rate, or `none` to remove the limit."""
    return None if isinstance(value, str) and value.strip().lower() == NONE else parse_rate(value, what)


def format_rate(bits: int) -> str:
    for unit, n in (("tbit", 10**12), ("gbit", 10**9), ("mbit", 10**6), ("kbit", 10**3)):
        if bits >= n and bits % n == 0:
            return f"{bits // n}{unit}"
    return f"{bits}bit"


def format_size(bits: int) -> str:
    if bits % 8:
        return f"{bits}bit"
    n = bits // 8
    for unit, size in (("gb", 2**30), ("mb", 2**20), ("kb", 2**10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n}b"


# -- the capability ----------------------------------------------------------------------
def capability(ingress: Rate | None, egress: Rate | None) -> dict[str, int] | None:
    """The `bandwidth` capability value; None when neither direction is limited."""
    out: dict[str, int] = {}
    if ingress is not None:
        out.update(ingressRate=ingress.rate, ingressBurst=ingress.burst)
    if egress is not None:
        out.update(egressRate=egress.rate, egressBurst=egress.burst)
    return out or None


def from_capability(value: Any) -> tuple[Rate | None, Rate | None]:
    """(ingress, egress) of a cached `bandwidth` capability value."""
    if not isinstance(value, dict):
        return None, None

    def one(direction: str) -> Rate | None:
        rate, burst = value.get(direction + "Rate"), value.get(direction + "Burst")
        if isinstance(rate, int) and rate > 0:
            return Rate(rate, burst if isinstance(burst, int) and burst > 0 else default_burst(rate))
        return None

    return one("ingress"), one("egress")


def describe(value: Any) -> str:
    """'ingress 10mbit:32kb, egress unlimited' for people."""
    ingress, egress = from_capability(value)
    return f"ingress {ingress or 'unlimited'}, egress {egress or 'unlimited'}"

"""cnirun.core.cidr against the stdlib's ipaddress: the same answers on random and odd inputs."""
from __future__ import annotations

import ipaddress
import random

import pytest

from cnirun.core import cidr

ODD = [
    "0.0.0.0/0", "255.255.255.255", "10.1.2.3/32", "10.1.2.3/8", "::", "::/0", "::1", "::1/128",
    "fe80::1/64", "2001:db8::/32", "2001:db8:0:0:1:0:0:1", "2001:0:0:1::1", "1:0:0:2:0:0:0:3",
    "::ffff:1.2.3.4", "::ffff:1.2.3.4/96", "::1.2.3.4", "::0.0.1.0", "64:ff9b::1.2.3.4", "ffff::",
    "1::", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", "0:0:1::",
]
BAD = [
    "", "/", "10", "10.1.2", "10.1.2.3.4", "10.1.2.256", "01.2.3.4", "10.1.2.3/", "10.1.2.3/33",
    "10.1.2.3/-1", "10.1.2.3/+8", "10.1.2.3/ 8", " 10.1.2.3", "10.1.2.3/8/8", "10.0.0.0/255.0.0.0",
    "::/129", "1:2:3:4:5:6:7:8:9", ":::", "1::2::3", "gggg::", "10.1.2.3\x00", "10.1.2.3/0008",
    "\u0661.2.3.4", "10.1.2.3/\u0668", "fe80::1%eth0",
]


def _random_text(rng: random.Random) -> str:
    if rng.random() < 0.5:
        addr = ".".join(str(rng.choice([0, 1, 10, 127, 192, 255, rng.randrange(256)])) for _ in range(4))
        return f"{addr}/{rng.randrange(33)}" if rng.random() < 0.8 else addr
    groups = [rng.choice([0, 0, 0, 1, 0xffff, rng.randrange(65536)]) for _ in range(8)]
    addr = str(ipaddress.IPv6Address(":".join(f"{g:x}" for g in groups)))
    if rng.random() < 0.3:
        addr = ":".join(f"{g:x}" for g in groups)  # uncompressed input
    return f"{addr}/{rng.randrange(129)}" if rng.random() < 0.8 else addr


def test_parse_and_print_agree_with_ipaddress() -> None:
    rng = random.Random(7)
    for text in ODD + [_random_text(rng) for _ in range(5000)]:
        want = ipaddress.ip_network(text, strict=False)
        got = cidr.parse(text)
        assert (got.version, got.network_str()) == (want.version, str(want)), text
        assert (got.value == got.network) == (ipaddress.ip_interface(text).ip == want.network_address), text


@pytest.mark.parametrize("text", BAD)
def test_what_is_not_a_cidr_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        cidr.parse(text)


def test_collapse_agrees_with_ipaddress() -> None:
    rng = random.Random(11)
    for _ in range(400):
        version = rng.choice([4, 6])
        texts = []
        for _ in range(rng.randrange(1, 12)):
            if version == 4:
                texts.append(f"10.{rng.randrange(4)}.{rng.randrange(4)}.{rng.randrange(256)}/{rng.randrange(20, 33)}")
            else:
                texts.append(f"fd00::{rng.randrange(4):x}:{rng.randrange(65536):x}/{rng.randrange(100, 129)}")
        want = [str(n) for n in ipaddress.collapse_addresses(ipaddress.ip_network(t, strict=False) for t in texts)]
        assert [n.network_str() for n in cidr.collapse([cidr.parse(t) for t in texts])] == want, texts
    assert cidr.collapse([]) == []
    assert [n.network_str() for n in cidr.collapse([cidr.parse("0.0.0.0/1"), cidr.parse("128.0.0.0/1")])] == ["0.0.0.0/0"]
    assert [n.network_str() for n in cidr.collapse([cidr.parse("::/1"), cidr.parse("8000::/1")])] == ["::/0"]

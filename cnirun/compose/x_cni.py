"""`x-cni` under a service: cnirun's extension of a compose service, as `cnirun run`'s flags.

    x-cni:
      ingress_rate: 10mbit          # --ingress-rate (network.rates.parse_rate)
      egress_rate: 10mbit:64kb      # --egress-rate
      ingress_allow: [web:5432]     # --ingress-allow, repeated (network.policies)
      egress_allow: [queue]         # --egress-allow, repeated

An allow list is a list of PEER[:PORTS] strings, or one such string (as
compose takes `dns:`), or `none` / `nobody` alone. A peer named after a
service covers every replica of it: a service's name is a DNS name of each
of its containers on the project's networks (compose.request). An empty list
is refused: it would read as "no peer allowed" to one person and "no policy"
to another, so `nobody` and `none` say which. Every value is checked here, at
load time, and the strings go to the RunRequest as written.
"""
from __future__ import annotations

from typing import Any

from ..core.errors import ArgumentError
from ..netstore.located import Document, Path as KeyPath, check_keys, expect_mapping, expect_str, type_name

RATE_KEYS = ("ingress_rate", "egress_rate")
ALLOW_KEYS = ("ingress_allow", "egress_allow")
X_CNI_SERVICE_KEYS = RATE_KEYS + ALLOW_KEYS  # in the order `compose config` shows them
_ALLOW_EXAMPLE = "e.g. [web:5432, net:backend, 10.0.0.0/8:443], nobody or none"


def parse_x_cni(doc: Document, svc: Any, value: Any, path: KeyPath) -> None:
    """Set svc's ingress_rate, egress_rate, ingress_allow and egress_allow from its x-cni mapping."""
    m = expect_mapping(doc, value, path, "a mapping with ingress_rate, egress_rate, ingress_allow and/or "
                                         "egress_allow")
    check_keys(doc, m, path, frozenset(X_CNI_SERVICE_KEYS))
    for key in RATE_KEYS:
        if m.get(key) is not None:
            setattr(svc, key, _rate(doc, m[key], path + (key,)))
    for key in ALLOW_KEYS:
        if m.get(key) is not None:
            setattr(svc, key, _allow(doc, m[key], path + (key,)))


def _rate(doc: Document, value: Any, path: KeyPath) -> str:
    from ..network.rates import parse_rate

    raw = expect_str(doc, value, path, "a rate such as 10mbit or 10mbit:64kb")
    try:
        parse_rate(raw, str(path[-1]))
    except ArgumentError as e:
        doc.fail(path, e.msg.replace(f"invalid {path[-1]} ", "invalid rate "))
    return raw


def _allow(doc: Document, value: Any, path: KeyPath) -> list[str]:
    """One allow list's values as written, each checked by network.policies (the file's path of a bad one)."""
    from ..network.policies import MAX_RULES, NOBODY, NONE, parse_allow, parse_rule

    if isinstance(value, list):
        items = [(v, path + (i,)) for i, v in enumerate(value)]
    elif isinstance(value, (dict, bool)):
        doc.fail(path, f"expected a list of PEER[:PORTS] ({_ALLOW_EXAMPLE}), got {type_name(value)}")
    else:
        items = [(value, path)]
    if not items:
        doc.fail(path, "an empty list: write nobody (no peer may connect) or none (no policy), "
                       f"or give PEER[:PORTS] values ({_ALLOW_EXAMPLE})")
    if len(items) > MAX_RULES:
        doc.fail(path, f"more than {MAX_RULES} peers: use a CIDR or net:NETWORK")
    values = []
    for item, p in items:
        raw = expect_str(doc, item, p, f"PEER[:PORTS] ({_ALLOW_EXAMPLE})")
        values.append(raw)
        if raw.strip().lower() in (NONE, NOBODY):
            continue
        try:
            parse_rule(raw, "peer")
        except ArgumentError as e:
            doc.fail(p, e.msg)
    try:
        parse_allow(values, str(path[-1]))  # what stands alone (none, nobody) stands alone
    except ArgumentError as e:
        doc.fail(path, e.msg.replace(f"invalid {path[-1]}: ", ""))
    return values

"""RFC 1123 host names: what a container's name, alias or hostname may be in DNS and /etc/hosts."""
from __future__ import annotations

MAX_HOSTNAME = 253
_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


def is_hostname(name: str) -> bool:
    """An RFC 1123 host name: dot-separated labels of letters, digits and '-', 1-63 each, 253 in all."""
    if not isinstance(name, str) or not name or len(name) > MAX_HOSTNAME:
        return False
    for label in name.split("."):
        if not 1 <= len(label) <= 63 or label[0] == "-" or label[-1] == "-":
            return False
        if not all(c in _LABEL_CHARS for c in label):
            return False
    return True

"""engines.spec: what a run's spec says about the volumes it mounts; engine-free."""
from __future__ import annotations

from cnirun.engines.spec import RunSpec, is_anonymous_volume

A = "0123456789abcdef" * 4


def test_borrowed_volumes_are_the_anonymous_ones_mounted_by_name() -> None:
    spec = RunSpec(image="busybox", volumes=[f"{A}:/data", f"{A}:/ro:ro", "/data2", "named:/x", f"/{A}:/bind",
                                             f"./{A}:/rel", "/a:/b"])
    assert spec.borrowed_volumes() == [A, A]


def test_anonymous_volume_names_are_64_lowercase_hex_digits() -> None:
    assert is_anonymous_volume(A)
    assert not any(is_anonymous_volume(n) for n in (A[:-1], A + "0", A.upper(), A[:-1] + "g", "", "data"))

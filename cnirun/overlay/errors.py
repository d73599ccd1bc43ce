"""Errors of the overlay code: one line for the user, a CNI error code for the hierarchy."""
from __future__ import annotations

from ..core.errors import INVALID_NETWORK_CONFIG, IO_FAILURE, TRY_AGAIN_LATER, CNIError


class OverlayError(CNIError):
    """Bad overlay input or state: the message says what was wrong and what to do."""

    code = INVALID_NETWORK_CONFIG


class EtcdUnavailable(OverlayError):
    """etcd did not answer (connection refused, timeout, 5xx): worth retrying."""

    code = TRY_AGAIN_LATER


class DataPlaneError(OverlayError):
    """The kernel refused a VXLAN device, route, neighbour or FDB change."""

    code = IO_FAILURE

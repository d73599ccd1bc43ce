"""Error hierarchy shared by every layer of cnirun.

Every error carries a CNI error code (SPEC.md "Error" section, plus libcni's
own 8 and 999) so that it can be printed as a CNI error object by a plugin
written with :mod:`cnirun.cni.skel`, and turned into a one-line message by the CLI.
"""
from __future__ import annotations

TYPE_CHECKING = False  # start-up cost: see cnirun.core
if TYPE_CHECKING:
    from typing import Any

# Well-known codes (SPEC.md 1.1.0, section "Error"; 8 and 999 come from libcni).
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODING_FAILURE = 6
INVALID_NETWORK_CONFIG = 7
INVALID_NETNS = 8
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50
NOT_AVAILABLE_DEGRADED = 51
INTERNAL = 999


class CNIError(Exception):
    """Base of every cnirun error; `code` is a CNI error code."""

    code: int = INTERNAL

    def __init__(self, msg: str, details: str = "", code: int | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        if self.details:
            return f"{self.msg}: {self.details}"
        return self.msg

    def to_dict(self, cni_version: str = "1.1.0") -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out

    def to_json(self, cni_version: str = "1.1.0") -> str:
        from . import jsonfast

        return jsonfast.dumps(self.to_dict(cni_version))


class ConfigError(CNIError):
    """A network configuration file or value is invalid (code 7 unless said)."""

    code = INVALID_NETWORK_CONFIG


class NetworkNotFound(ConfigError):
    """No network with the requested name."""

    def __init__(self, name: str, where: str, known: list[str] | None = None) -> None:
        hint = ""
        if known is not None:
            hint = f" (known networks: {', '.join(known) if known else 'none'})"
        super().__init__(f'no net configuration with name "{name}" in {where}{hint}')
        self.name = name
        self.known = known or []


class VersionError(CNIError):
    """Incompatible or unparsable CNI version (code 1)."""

    code = INCOMPATIBLE_VERSION


class ArgumentError(CNIError):
    """Bad runtime input: container ID, interface name, CNI_ARGS, CAP_ARGS (code 4)."""

    code = INVALID_ENVIRONMENT


class NetnsError(CNIError):
    """The network namespace is missing or unusable (libcni code 8)."""

    code = INVALID_NETNS


class CacheError(CNIError):
    """The result cache cannot be read or written (code 5)."""

    code = IO_FAILURE


class PluginNotFound(CNIError):
    """No executable for a plugin type along CNI_PATH (code 50: not available)."""

    code = NOT_AVAILABLE


class PluginError(CNIError):
    """A plugin ran and failed, crashed, hung or printed garbage.

    `plugin`, `network` and `command` say which call failed; `code`, `msg` and
    `details` are the plugin's own when it printed a CNI error object.
    """

    def __init__(
        self,
        plugin: str,
        network: str,
        command: str,
        msg: str,
        code: int = INTERNAL,
        details: str = "",
    ) -> None:
        super().__init__(msg, details, code)
        self.plugin = plugin
        self.network = network
        self.command = command

    def __str__(self) -> str:
        text = f'plugin type="{self.plugin}" name="{self.network}" failed ({self.command.lower()}): '
        text += f"code {self.code}: {self.msg}"
        if self.details:
            text += f" ({self.details})"
        return text


class PluginTimeout(PluginError):
    """A plugin did not finish within the timeout and was killed (code 11)."""


class LockError(CNIError):
    """A lock could not be taken in time (code 11: try again later)."""

    code = TRY_AGAIN_LATER


class EngineError(CNIError):
    """The container engine is unreachable or refused a request."""

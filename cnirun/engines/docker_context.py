"""Which Docker daemon cnirun talks to: the docker CLI's contexts, DOCKER_HOST and the default socket.

One resolver for both Docker clients (engines.dockerapi's lean one and the
SDK's in engines.docker), so that cnirun, and cnirun and docker, never talk
to different daemons. The context store is the docker CLI's own:
$DOCKER_CONFIG (default ~/.docker)/contexts/meta/<sha256 of the name>/meta.json
and its TLS files under contexts/tls/<sha256>/docker/. Imports nothing heavy:
the run path resolves the endpoint on every run.
"""
from __future__ import annotations

import os

from ..core import jsonfast as json
from ..core.errors import EngineError

DEFAULT_SOCKET = "/var/run/docker.sock"


class DockerEndpoint:
    """Where the Docker daemon is: its host URL, the context that named it, and that context's TLS files."""

    __slots__ = ("host", "context", "tls_dir", "skip_tls_verify", "source")

    def __init__(self, host: str, context: str = "default", tls_dir: str = "", skip_tls_verify: bool = False,
                 source: str = "default") -> None:
        self.host = host
        self.context = context
        self.tls_dir = tls_dir  # ca.pem, cert.pem, key.pem of the context ('' when none)
        self.skip_tls_verify = skip_tls_verify
        self.source = source  # what chose it: --context, DOCKER_CONTEXT, DOCKER_HOST, config, default

    def __repr__(self) -> str:
        return f"DockerEndpoint({self.host!r}, context={self.context!r}, source={self.source!r})"


def docker_config_dir() -> str:
    """DOCKER_CONFIG, else ~/.docker (as the docker CLI)."""
    return os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")


def _current_context(config_dir: str) -> str:
    try:
        with open(os.path.join(config_dir, "config.json"), "rb") as f:
            data = json.loads(f.read() or b"{}")
    except FileNotFoundError:
        return ""
    except (OSError, ValueError) as e:
        raise EngineError(f"{config_dir}/config.json: cannot read it ({e}): fix it or set DOCKER_CONFIG") from None
    return str(data.get("currentContext") or "") if isinstance(data, dict) else ""


def _context_endpoint(name: str, config_dir: str, source: str) -> DockerEndpoint:
    """The docker endpoint of a named context from the docker CLI's context store."""
    from hashlib import sha256

    digest = sha256(name.encode()).hexdigest()
    meta = os.path.join(config_dir, "contexts", "meta", digest, "meta.json")
    try:
        with open(meta, "rb") as f:
            data = json.loads(f.read())
        ep = data["Endpoints"]["docker"]
        host = str(ep["Host"])
    except FileNotFoundError:
        raise EngineError(
            f"docker context {name!r} (from {source}) does not exist in {config_dir}/contexts: "
            "see `docker context ls`, or unset it"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise EngineError(f"docker context {name!r}: cannot read {meta} ({e}): recreate the context") from None
    tls = os.path.join(config_dir, "contexts", "tls", digest, "docker")
    return DockerEndpoint(host, name, tls if os.path.isdir(tls) else "", bool(ep.get("SkipTLSVerify")), source)


def resolve_endpoint() -> DockerEndpoint:
    """The Docker daemon to talk to, chosen as cnirun's contract orders it.

    cnirun's --context (main.py puts it into DOCKER_CONTEXT), DOCKER_CONTEXT,
    DOCKER_HOST, the docker CLI config's currentContext (DOCKER_CONFIG or
    ~/.docker), then the default socket. The context "default" means
    DOCKER_HOST or the default socket. Both clients (this lean one and the
    SDK's in engines.docker) use this, so they never talk to different daemons.
    """
    name, source = os.environ.get("DOCKER_CONTEXT", ""), "--context or DOCKER_CONTEXT"
    host = os.environ.get("DOCKER_HOST", "")
    if not name:
        if host:
            return DockerEndpoint(host, "default", source="DOCKER_HOST")
        config_dir = docker_config_dir()
        name, source = _current_context(config_dir), "config.json currentContext"
        if not name:
            return DockerEndpoint("unix://" + DEFAULT_SOCKET)
    if name == "default":
        return DockerEndpoint(host or "unix://" + DEFAULT_SOCKET, "default",
                              source="DOCKER_HOST" if host else source)
    return _context_endpoint(name, docker_config_dir(), source)

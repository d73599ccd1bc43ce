"""What a `cnirun run` asks for (RunRequest) and what it gives back (RunOutcome).

The parsers build the request (cli.run from argv, compose from a service),
the runner carries it out and returns the outcome, and the caller decides
what to print: the CLI prints like `docker run`, compose its own lines. It
lives below both so that the runner and compose never import the CLI
(config -> CNI -> engines -> runner -> CLI).
"""
from __future__ import annotations

from ..engines.spec import RunSpec
from ..core.value import Record


class RunRequest(Record):
    spec: RunSpec
    networks: list[str]
    publish: list[str]
    ip: str  # static address on the first network
    network_ips: dict[str, str]  # network name -> static address
    mac: str
    dns: list[str]
    dns_search: list[str]
    engine: str
    mode: str
    file: str
    pull: str  # missing (default), always or never: as `docker run --pull`
    ingress_rate: str  # RATE[:BURST] (policy.parse_rate), '' for no limit
    egress_rate: str
    ip6: str  # static IPv6 address on the first network (--ip6)
    network_ips6: dict[str, str]  # network name -> static IPv6 address (--ip6 NET=IP6)
    aliases: list[str]  # DNS names on every network of the run (--network-alias)
    network_aliases: dict[str, list[str]]  # network name -> DNS names there (compose's networks.<net>.aliases)
    # Firewall policy (network.policies): the PEER[:PORTS] values as given, none or nobody; [] not given
    ingress_allow: list[str]
    egress_allow: list[str]

    _fields = ('spec', 'networks', 'publish', 'ip', 'network_ips', 'mac', 'dns', 'dns_search', 'engine', 'mode', 'file',
               'pull', 'ingress_rate', 'egress_rate', 'ip6', 'network_ips6', 'aliases', 'network_aliases',
               'ingress_allow', 'egress_allow')
    _defaults = {
        'networks': list, 'publish': list, 'ip': "", 'network_ips': dict, 'mac': "", 'dns': list, 'dns_search':
        list, 'engine': "", 'mode': "", 'file': "", 'pull': "missing", 'ingress_rate': "", 'egress_rate': "",
        'ip6': "", 'network_ips6': dict, 'aliases': list, 'network_aliases': dict, 'ingress_allow': list,
        'egress_allow': list,
    }


class RunOutcome(Record):
    """How a run ended: its exit status, the container it made and what went wrong.

    code: the container's exit status, or 125/126/127 as `docker run`.
    container: the engine's container ID ('' when none was made).
    run_id: the run's state dir and CNI container ID ('' when none was made).
    detached: the container runs on (-d): the watcher owns it now.
    error: one line when cnirun itself failed ('' otherwise).
    warnings: lines about what could not be undone (the watcher or gc retries).
    """

    code: int
    container: str
    run_id: str
    detached: bool
    error: str
    warnings: list[str]

    _fields = ('code', 'container', 'run_id', 'detached', 'error', 'warnings')
    _defaults = {'code': 125, 'container': "", 'run_id': "", 'detached': False, 'error': "", 'warnings': list}

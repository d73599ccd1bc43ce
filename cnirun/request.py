"""What a `cnirun run` asks for: the container (RunSpec) plus its CNI networking.

The parsers build it (cli.run from argv, compose from a service) and the
runner carries it out; it lives below both so that the runner and compose
never import the CLI (config -> CNI -> engines -> runner -> CLI).
"""
from __future__ import annotations

from .engines.spec import RunSpec
from .value import Record


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

    _fields = ('spec', 'networks', 'publish', 'ip', 'network_ips', 'mac', 'dns', 'dns_search', 'engine', 'mode', 'file')
    _defaults = {
        'networks': list, 'publish': list, 'ip': "", 'network_ips': dict, 'mac': "", 'dns': list, 'dns_search':
        list, 'engine': "", 'mode': "", 'file': "",
    }

"""The network store: compose-style YAML network files, their conversion to CNI conflists, and
the networks cnirun installs (`cnirun network create/ls/inspect/rm/prune/convert`, `run -f`).

Below the runner and compose (both use it), above the CNI core. PyYAML is
imported only by the functions that parse files, never at package import.

- located: YAML documents that remember where each value came from (file:line in errors);
- networks: a `networks:` mapping -> NetworkSpec -> conflist (Planner picks free subnets);
- hostnet: the host's routes and links (subnets must not collide with them);
- isolation: iptables rules that keep cnirun bridges apart, as Docker's are;
- store: installed conflists under NETCONFPATH, their bridges, removal.
"""

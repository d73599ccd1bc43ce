"""Multi-host overlay networks: flannel's contract, implemented by cnirun.

A daemon per host (`cnirun overlay agent`) leases a subnet of the overlay
network from etcd, writes flannel's subnet.env and programs a VXLAN device
with one route, one neighbour and one FDB entry per other host; the `flannel`
CNI plugin (cnirun.plugins.flannel) reads subnet.env and delegates to bridge
and host-local. Same etcd keys and formats as flanneld, so cnirun agents and
flanneld can share a network.

One concept per module: config (network config, subnet arithmetic), lease
(flannel's lease value), etcd (the store client), registry (flannel's key
layout and lease acquisition), subnet_env, vxlan (the data plane), agent (the
daemon loop), status (what an agent reports). pyroute2 and etcd3gw are
imported only inside the functions that use them.
"""

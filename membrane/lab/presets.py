"""Named lab topologies for ``membrane lab create --topology NAME`` (instead of a ``--config`` file).

``seed-bgp`` is the seeds' BGP lab: k8s-ctr and k8s-w1 on 192.168.10.0/24, k8s-w0 on 192.168.20.0/24,
a ``router`` namespace on both subnets that runs FRR (ASN 65000, membrane.lab.frr), host-scope pod
CIDRs and the BGP control plane on. Apply ``examples/bgp.yaml`` to peer every node with the router.
"""

from __future__ import annotations

PRESETS = {
    "seed-bgp": """\
nodes:
  - {name: k8s-ctr, ip: 192.168.10.100/24, podCIDR: 10.244.0.0/24}
  - {name: k8s-w1, ip: 192.168.10.101/24, podCIDR: 10.244.1.0/24}
  - {name: k8s-w0, ip: 192.168.20.100/24, podCIDR: 10.244.2.0/24}
router: {name: router, ips: [192.168.10.200/24, 192.168.20.200/24]}
settings:
  ipam.mode: kubernetes
  bgpControlPlane.enabled: true
""",
}

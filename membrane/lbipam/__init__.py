"""LB-IPAM: LoadBalancer Service addresses from CiliumLoadBalancerIPPools (pure logic, no I/O)."""

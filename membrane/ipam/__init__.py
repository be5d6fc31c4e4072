"""IP address management: node pod-CIDR allocation (cluster-pool, kubernetes) and host-scope pod IP allocation."""

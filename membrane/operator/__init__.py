"""The cluster-wide daemon (membrane-operator): node pod-CIDR allocation and garbage collection."""

"""A multi-node cluster on one machine: namespaces, underlay, etcd, daemons, lab kubelet and workloads."""

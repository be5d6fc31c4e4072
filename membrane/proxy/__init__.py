"""Node-local L7 proxies (HTTP, DNS, Kafka) behind the datapath's transparent redirect (bpf/lib/proxy.h)."""

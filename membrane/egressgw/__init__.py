"""Egress gateway control plane: which (source pod, destination CIDR) leaves through which gateway
node with which egress IP (membrane.egressgw.rows). Pure: no datapath, no store."""

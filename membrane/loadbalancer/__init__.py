"""Services control plane (pure): ClusterIP/NodePort allocation, EndpointSlices, per-node frontends, Maglev.

Imports only membrane.model/state; the lab controller (membrane.lab.services) and the agent wire it to
the store and the datapath.
"""

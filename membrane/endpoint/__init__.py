"""Endpoints: the pod-facing records the agent keeps (IP, interface, MACs, state) and their naming rules."""

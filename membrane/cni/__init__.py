"""The CNI plugin (membrane-cni): thin and fast, it forwards CNI requests to the agent socket."""

"""Value types and resources (Pod, Deployment, Node, Service, policies) with validation and precise errors; no I/O."""

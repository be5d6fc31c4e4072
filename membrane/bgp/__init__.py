"""BGP control plane v2: what each node advertises to each peer (pure logic, no I/O; no speaker yet)."""

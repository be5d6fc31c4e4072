"""L2 announcements: which node answers ARP for which Service address (pure logic, no I/O)."""

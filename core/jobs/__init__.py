"""Job records: the store (leases, fencing), statuses, deadlines, throughput figures."""

"""Tools that drive or size a hub from outside: load test, benchmark, capacity plan, reliability report."""

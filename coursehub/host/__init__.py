"""Side effects on this machine: up, down and status of the hub, its database URL, backup and restore."""

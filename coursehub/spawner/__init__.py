"""SandboxSpawner: one Unix account, one bubblewrap sandbox and one cgroup per user server."""

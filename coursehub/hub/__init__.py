"""Runs inside the JupyterHub process (config shim, authenticator wrapper and routes, monitor, status page),
or as its managed services (the cullers)."""

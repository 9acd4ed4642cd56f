"""Runs inside the JupyterHub process: config shim, authenticator wrapper and routes, monitor, status page."""

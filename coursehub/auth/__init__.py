"""Workshop accounts: the SQLite store, login lockout, the JupyterHub authenticator, cards."""

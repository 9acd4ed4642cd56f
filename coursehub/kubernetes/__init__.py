"""The Kubernetes backend: pure builders of the Zero to JupyterHub chart's values."""

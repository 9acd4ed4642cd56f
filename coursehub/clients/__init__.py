"""Clients of a running hub and its servers: the Hub REST API and kernels over websocket."""

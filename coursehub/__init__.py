"""coursehub: Jupyter for classes, workshops and science gateways."""

__version__ = "0.1.0"

"""interlock: the same SSH-ready, root-secured nodes on every cloud and on bare metal."""

__version__ = "0.1.0"

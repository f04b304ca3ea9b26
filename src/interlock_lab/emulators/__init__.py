"""Emulated cloud APIs, one module per API kind."""

"""Sandbox nodes: namespaces, an overlay root, a tiny init and a real sshd."""

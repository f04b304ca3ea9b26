"""Drivers that run inside the lab's Nova and Neutron and call the lab's control API."""

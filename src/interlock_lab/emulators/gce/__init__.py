"""The lab's Compute Engine: a v1 REST endpoint on loopback that the real
google-cloud-compute SDK talks to (`api_endpoint`, anonymous credentials), each
instance a sandbox node with Google's guest environment.

- resources: the API's resources as data, and their REST form
- catalog: what the site file gives the project (zone, machine types, images, networks)
- project: instances, addresses, firewall rules and asynchronous operations
- guest: the guest agent's accounts from `ssh-keys`, OS Login
- firewall: Compute Engine firewall rules, enforced on the lab's fabric
- filters: list filters; api: the REST paths (FastAPI)
"""

from interlock_lab.emulators.gce.site import GceSite

__all__ = ["GceSite"]

"""Google Compute Engine through the official SDK (google-cloud-compute, REST transport):
the operations (provider) over the API plumbing (client)."""

from interlock.providers.gce.provider import GceProvider, label

__all__ = ["GceProvider", "label"]

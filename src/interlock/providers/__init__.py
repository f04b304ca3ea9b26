"""One module per API kind; `make_provider` picks it from a site's config."""

from __future__ import annotations

from interlock.config import AwsSite, GceSite, MetalSite, OpenstackSite, SiteBase
from interlock.providers.base import Provider
from interlock.store import Store


def make_provider(name: str, config: SiteBase, store: Store) -> Provider:
    if isinstance(config, AwsSite):
        from interlock.providers.aws import AwsProvider

        return AwsProvider(name, config)
    if isinstance(config, MetalSite):
        from interlock.providers.metal import MetalProvider

        return MetalProvider(name, config, store)
    if isinstance(config, OpenstackSite):
        from interlock.providers.openstack import OpenstackProvider

        return OpenstackProvider(name, config)
    if isinstance(config, GceSite):
        from interlock.providers.gce import GceProvider

        return GceProvider(name, config)
    raise TypeError(f"no provider for {type(config).__name__}")

"""One module per API kind, found by kind in a registry: the `interlock.providers` entry
points (pyproject.toml; see interlock.plugins), so a provider can come from another
package too. Each names a class built as `Provider(site, config, store)`; its SDK is
imported when it is built."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from interlock import plugins
from interlock.errors import ExitCode, InterlockError

if TYPE_CHECKING:
    from interlock.providers.base import Provider, ProviderClass
    from interlock.state import Store


def provider_class(kind: str) -> ProviderClass:
    found = plugins.load(plugins.PROVIDERS, kind)
    if found is None:
        installed = ", ".join(plugins.names(plugins.PROVIDERS))
        raise InterlockError(
            f"no provider for kind {kind!r}; installed: {installed}", ExitCode.BAD_INPUT
        )
    return cast("ProviderClass", found)


def make_provider(site: str, config: Any, store: Store) -> Provider:
    """The provider of a site's config (one of interlock.config's site models)."""
    return provider_class(config.provider)(site, config, store)

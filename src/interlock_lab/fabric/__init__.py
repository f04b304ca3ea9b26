"""The cloud fabric: lab networks, address pools, public-address forwarding."""

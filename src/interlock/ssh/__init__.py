"""SSH: keys, access to nodes (steps 5-8), and facts read from them."""

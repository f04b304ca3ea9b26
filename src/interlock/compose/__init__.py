"""Composable operations (after Digital Rebar's annealer): roles as data, deployments that
bind them to nodes, the node-role graph, and a durable executor that converges it, each
run given exactly the attributes its role declared."""

"""interlock's HTTP API (`interlock serve`): the services the CLI uses, over FastAPI."""

"""The doors to interlock's work: what the CLI (and the coming HTTP API) call, each a plain
function over an engine, returning typed results; no printing, no parsing of arguments."""

"""Tools a model may call: built-in python/browser/apply_patch, config function tools, MCP."""

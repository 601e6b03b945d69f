"""The TUI's widgets. They never import mlx; engine data arrives as events."""

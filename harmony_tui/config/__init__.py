"""Config files: prompt configs, user config."""

"""Hook specifications and the plugin manager factory."""

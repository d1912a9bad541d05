"""Reporters: each output format is a plugin selected by name."""

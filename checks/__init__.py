"""Built-in checks, each registered through the same hook a third-party plugin uses."""

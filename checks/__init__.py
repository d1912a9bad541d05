"""Built-in checks, each registered through the same hook a third-party plugin uses.

A check is a short function with its metadata beside it; it judges facts
(descriptors, bundle and disk facts, guest facts) and reads nothing itself.
Checks use the foundation, the bundle and the guest layers; nothing in
``certify/`` imports them (the plugin manager registers them by name).
"""

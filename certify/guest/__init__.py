"""What is inside: the guest's files, read offline through one read-only libguestfs launch.

Holds the reader (``reader``: launch, mount, one inventory walk, batched reads),
the choice of accelerator (``accel``), the fact collectors that do the reading
(``collectors``) and the pure parsers of what they read (``parsers``).

May use the foundation and, of the bundle layer, only ``certify.bundle.disk``:
the disks it attaches. Never the policy or the checks.
"""

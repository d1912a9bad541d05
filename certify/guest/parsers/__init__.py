"""Pure parsers of guest files: bytes or text in, plain data out, no I/O.

passwd/shadow/group and sudoers (``passwd``, ``accounts``), password hashes
(``crypt``), secrets, SSH keys and sshd configuration, package databases,
permissions, residue, remote-access tools, VNC passwords, cloud-init and
answer files, fstab and LVM labels. Each is fuzzable on its own; the reader's
``Stat`` and ``Inventory`` are the only guest types they take.
"""

"""The PV UUID in an LVM2 physical volume label, read from the first sectors of a device.

LVM writes a ``LABELONE`` header in one of the first four 512-byte sectors;
the PV header it points to starts with the 32-character UUID (no dashes).
Reading it directly tells which disk holds a PV without trusting the device
names LVM reports.
"""

from __future__ import annotations

import struct

SECTOR = 512
LABEL_SCAN_BYTES = 4 * SECTOR
_LABEL_ID = b"LABELONE"
_LVM2_TYPE = b"LVM2 001"
_UUID_LEN = 32


def pv_uuid(head: bytes) -> str | None:
    """The PV UUID from a device's first ``LABEL_SCAN_BYTES`` bytes; None when it carries no LVM2 label."""
    for sector in range(0, min(len(head), LABEL_SCAN_BYTES), SECTOR):
        label = head[sector : sector + SECTOR]
        if len(label) < 32 or label[:8] != _LABEL_ID or label[24:32] != _LVM2_TYPE:
            continue
        (offset,) = struct.unpack_from("<I", label, 20)  # where the PV header starts, from the label's sector
        uuid = head[sector + offset : sector + offset + _UUID_LEN]
        if len(uuid) == _UUID_LEN and uuid.isascii() and uuid.isalnum():
            return uuid.decode("ascii")
    return None

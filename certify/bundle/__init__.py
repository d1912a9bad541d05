"""What came in: the upload and its descriptors, read without trusting a byte of it.

Holds ingest (identify, stage, verify) and what it reads: the OVA tar stream
(``ova``, each member's raw headers judged by ``tarheaders``), files of a
directory bundle (``files``), OVF and VMX descriptors and their common shape
(``descriptor``), manifests, signatures and trust stores,
disk headers checked against their files (``diskformat``, with a reader per
format family in ``qcow2``, ``vmdk`` and ``vhd``, their shared pieces in
``diskimage``), the disk handed on to the guest layer (``disk``), which
VMX/OVF settings are dangerous (``vmx_policy``) and the sanitizers that
remove them.

May use the foundation only (``certify.model``, ``errors``, ``units``,
``progress``); never the guest, the policy or the checks.
"""

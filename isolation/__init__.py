"""Per-vDC network isolation and admission (nftables, network namespaces).

The only part of certify that touches the host network. Empty until the
admission work lands; it is a package now so the import namespace is fixed.
"""

"""Per-vDC network isolation and admission (nftables, network namespaces).

The only part of certify that touches the host network. Pure parts (the
provider model, rendering, read-back state, the expected matrix) sit beside
the parts that act on the host (namespaces, ruleset, deploy, verify, registry,
admission). Uses the foundation and the certificate it admits appliances by.
"""

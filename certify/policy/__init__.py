"""What we decide: profiles, waivers, baselines, the verdict and the signed certificate.

Holds the profile loader and the shipped ``profiles/``, waivers and baselines
applied to findings, the verdict, and the certificate that binds a verdict to
the artifact's digest. May use the foundation and the bundle layer (the
artifact's identity); never the guest layer or the checks.
"""

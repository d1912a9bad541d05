"""What came in: the upload, its archive, descriptors, manifest, signature and disk headers."""

"""Pure parsers of guest files: bytes or text in, plain data out."""

"""What is inside: the read-only libguestfs session, its fact collectors and the parsers of guest files."""

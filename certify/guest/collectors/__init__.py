"""Built-in guest fact collectors: the only code that reads inside a guest.

Each collector turns reader calls into a named fact for the checks, using the
parsers beside it; it never judges (that is the checks' job).
"""

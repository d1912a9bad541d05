"""Built-in guest fact collectors: the only code that reads inside a guest."""

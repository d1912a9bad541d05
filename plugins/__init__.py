"""Hook specifications and the plugin manager factory.

``hookspecs`` is part of the foundation every layer may use; ``manager``
registers the built-in checks, collectors and reporters by module name, then
the ``certify`` entry points.
"""

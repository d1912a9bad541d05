"""Reporters: each output format is a plugin selected by name.

A reporter renders a finished ``certify.model.Report`` and uses nothing else:
text, JSON, SARIF, JUnit and HTML (its template in ``templates/``).
"""

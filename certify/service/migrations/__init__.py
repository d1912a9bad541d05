"""Alembic environment and revisions of the service database (see ``certify.service.db.upgrade``)."""

"""Framework-free rules of convhub: job states, leases, matching, naming.

Nothing here imports flask, celery, kombu, spyne or sqlalchemy (import-linter enforces it).
"""

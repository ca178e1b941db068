"""Data access: PynamoDB models (one module per table) and the repositories the use cases call.

Table names are bound at run time by ``bind_tables`` from the function's settings, never at import.
Use cases receive repositories and see domain objects, never PynamoDB models.
"""

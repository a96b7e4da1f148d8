"""The database: the binding (db.py), the tables (models.py) and their versioned
migrations. Imports only the collector's leaves (config, errors)."""

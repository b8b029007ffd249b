"""Shared library of mlsys: settings, database, tables, migrations, logging, MLflow helpers."""

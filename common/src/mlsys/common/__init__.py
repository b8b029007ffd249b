"""Shared core of mlsys, what every component needs: settings, database engines, the tables'
base conventions, the migrations runner, bulk upserts, logging and MLflow basics."""

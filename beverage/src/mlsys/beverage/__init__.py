"""What the components of beverage demand forecasting share: their tables and migrations,
their database, and the names of their MLflow experiment, model and metrics."""

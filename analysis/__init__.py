"""Turn MLflow runs and Optuna studies into tables, curves and reports."""

"""Streamlit BI for beverage demand forecasting."""

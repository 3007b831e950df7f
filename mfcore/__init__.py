"""MF Studio's engine: explicit-rating matrix factorization in PyTorch (never imports streamlit)."""

__version__ = "0.1.0"

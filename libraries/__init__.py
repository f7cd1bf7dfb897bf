"""The code behind scripts/0_downloadData.py ... 5_evaluate.py, one module per concern."""

__version__ = "0.1.0"

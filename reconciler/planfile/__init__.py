"""Saved plans: the Plan JSON file read strictly (read.py) and verified against a fresh plan (verify.py)."""

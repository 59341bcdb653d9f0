"""Scores of an explanation, computed from batched passes through the pass runner (faithfulness today)."""

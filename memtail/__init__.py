"""memtail: what neural networks memorize, measured as a database-backed job queue.

Implements the subsampled memorization and influence estimators of Feldman & Zhang,
"What Neural Networks Memorize and Why: Discovering the Long Tail via Influence
Estimation" (NeurIPS 2020, arXiv:2008.03703).
"""

__version__ = "0.1.0"

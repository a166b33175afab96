"""The processes' work: the worker loop, the coordinator, the estimator, the embedded run."""

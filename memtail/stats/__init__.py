"""Pure maths over arrays: the estimators, their intervals and null model, the bit codec.

Nothing here knows of databases, Celery or training; it imports numpy and scipy (numba
for the compiled kernels, torch and Triton only inside the GPU scan, when asked for).
"""

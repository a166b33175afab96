"""Fault injection for the fault-injection suite (``tests/test_faults_*.py``).

``sitecustomize.py`` is loaded by subprocesses that have this folder on ``PYTHONPATH``;
``cluster.py`` starts and inspects the docker-compose.yml services for the tests.
"""

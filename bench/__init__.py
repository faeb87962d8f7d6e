"""Benchmark harness: prunekit strategies side by side with reference pruning tools.

Everything imported by both venvs (``data``, ``architectures``, ``weights_io``,
``metrics``, ``config``) is numpy-only so that it runs under Keras 3 (service venv)
and under Keras 2 / tf_keras (``bench/.venv-tfmot``) alike.
"""

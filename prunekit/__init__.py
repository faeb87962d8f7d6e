"""prunekit: the pruning engine.

A plain library: it imports neither the web service nor the task queue. Importing
``prunekit`` (or its registry, specs and mask maths) does not import TensorFlow; the
modules that load, train and save models do, and they are imported only where needed.
"""

__version__ = "0.1.0"

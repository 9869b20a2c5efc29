"""OrcaRouter: a self-hosted LLM gateway."""

from orcarouter.native import activate

__version__ = "0.1.0"

# Before any other module of the package is imported: the request path's modules load compiled
# when `make install` built them from these very sources (orcarouter.native).
NATIVE = activate()

"""The model catalog, the verified store, and explicit installation."""

from .catalog import CATALOG, DEFAULT_PULL, ModelSpec, get_spec
from .store import InstalledModel, ModelStore

__all__ = ["CATALOG", "DEFAULT_PULL", "ModelSpec", "get_spec", "InstalledModel", "ModelStore"]

"""The model catalog: providers, models, aliases, capabilities, limits and dated prices.

Loaded from the data the project ships (`data/catalog.json`, built from models.dev by
`refresh`) plus operator entries. Depends on nothing else in the project.
"""

from orcarouter.catalog.errors import CatalogError
from orcarouter.catalog.model import Catalog, ModelInfo, Price, PriceTier
from orcarouter.catalog.refresh import RefreshSummary, build_catalog, refresh_catalog
from orcarouter.catalog.schema import Capability, Modality, ModelKind

__all__ = [
    "Capability",
    "Catalog",
    "CatalogError",
    "Modality",
    "ModelInfo",
    "ModelKind",
    "Price",
    "PriceTier",
    "RefreshSummary",
    "build_catalog",
    "refresh_catalog",
]

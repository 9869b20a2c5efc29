"""The one error the catalog raises."""

from __future__ import annotations


class CatalogError(ValueError):
    """Catalog data (shipped, refreshed or operator-supplied) is invalid or inconsistent."""

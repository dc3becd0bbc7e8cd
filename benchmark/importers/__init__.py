"""Importers of other tools' results into our results store (orchestration side)."""

from benchmark.importers.dlib import ImportSummary, import_dlib

__all__ = ["ImportSummary", "import_dlib"]

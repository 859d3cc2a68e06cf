"""Datasets: paired benchmark folders in their published layouts."""

from .pairs import LAYOUTS, DatasetLayoutError, Pair, PairSet, detect_layout, find_pairs
from .shared import shared_folder

__all__ = ["LAYOUTS", "DatasetLayoutError", "Pair", "PairSet", "detect_layout", "find_pairs", "shared_folder"]

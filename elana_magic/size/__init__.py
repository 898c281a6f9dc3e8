"""Size: parameters, buffers and packed weights by storage bytes, and the KV / SSM cache for any batch and length.

``measure_size(model_or_folder_or_config, batch=[1], seq_len=[1024, 2048]) -> SizeReport``;
``largest_fit(model, seq_len=4096)`` / ``largest_fit(model, batch=8) -> FitReport`` (``fit``).
"""

from .cache_shapes import CacheLayout, LayerCache, cache_layout
from .fit import FitReport, largest_fit
from .measure import measure_cache, measure_size
from .report import SizeReport
from .weights import SizeError, WeightBytes, count_weights, parse_dtype

__all__ = ["CacheLayout", "FitReport", "largest_fit", "LayerCache", "SizeError", "SizeReport", "WeightBytes", "cache_layout",
           "count_weights", "measure_cache", "measure_size", "parse_dtype"]

"""Size: parameters, buffers and packed weights by storage bytes, and the KV / SSM cache for any batch and length.

``measure_size(model_or_folder_or_config, batch=[1], seq_len=[1024, 2048]) -> SizeReport``.
"""

from .cache_shapes import CacheLayout, LayerCache, cache_layout
from .measure import measure_cache, measure_size
from .report import SizeReport
from .weights import SizeError, WeightBytes, count_weights, parse_dtype

__all__ = ["CacheLayout", "LayerCache", "SizeError", "SizeReport", "WeightBytes", "cache_layout", "count_weights",
           "measure_cache", "measure_size", "parse_dtype"]

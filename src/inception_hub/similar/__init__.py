"""Similar photos: a nearest-neighbour `Index` of feature vectors (`index`) and contact sheets
(`sheet`). `inception-hub index`, `search`, `dedupe` and the server's similar-photos route use it."""

from .index import Hit, Index, groups, is_index, model_identity, stream

__all__ = ["Hit", "Index", "groups", "is_index", "model_identity", "stream"]

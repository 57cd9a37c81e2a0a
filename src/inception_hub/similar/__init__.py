"""Similar photos: a nearest-neighbour `Index` of feature vectors (`index`), near-duplicate
groups (`dedupe`), contact sheets (`sheet`), and embed outputs read back without trusting them
(`embeddings`). `inception-hub index`, `search` and `dedupe` and the server's similar-photos
route use it."""

from .dedupe import groups
from .index import Hit, Index, is_index, model_identity, stream

__all__ = ["Hit", "Index", "groups", "is_index", "model_identity", "stream"]

"""Drop-in replacement for the nudge-ft API: ``from nudge_sync.compat import NUDGEN, NUDGEM``."""

from .core.compat import NUDGEM, NUDGEN, QueriesAnswersDict, finetune_embeddings

__all__ = ["NUDGEN", "NUDGEM", "QueriesAnswersDict", "finetune_embeddings"]

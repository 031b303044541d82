"""SciFact (BEIR, all-MiniLM-L6-v2 embeddings from ../shared/data) loaded into a real backend.

The corpus goes in with the harness's native client and rich payloads, so the end-to-end tests can
prove that a sync leaves everything but the vectors byte-identical. The labelled query log holds
all three splits with the log's own split field: train -> "train", dev -> "val" (chooses gamma),
test -> "test" (held out: never used by a run, only by ``eval``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from connectors import LabelledQuery, RecordId
from nudge_sync import Answers

SPLIT_OF = {"train": "train", "dev": "val", "test": "test"}


@dataclass
class SciFact:
    ids: list[RecordId]  # database ids, aligned with vectors
    vectors: np.ndarray
    queries: dict[str, np.ndarray]  # by source split: train / dev / test
    answers: dict[str, Answers]  # rows of ``vectors``
    entries: list[LabelledQuery]

    def entries_of(self, *splits: str) -> list[LabelledQuery]:
        wanted = {SPLIT_OF[s] for s in splits}
        return [e for e in self.entries if e.split in wanted]


def load(path: Path, id_type: str) -> SciFact:
    d = np.load(path, allow_pickle=False)
    raw = d["doc_ids"]
    if id_type == "int":
        ids: list[RecordId] = [int(x) for x in raw]
    elif id_type == "uuid":
        import uuid

        ids = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"scifact-{x}")) for x in raw]
    else:
        ids = [f"doc-{x}" for x in raw]
    queries, answers, entries = {}, {}, []
    for split in ("train", "dev", "test"):
        ptr, idx, rel = d[f"{split}_ans_ptr"], d[f"{split}_ans_idx"], d[f"{split}_ans_rel"]
        queries[split] = d[f"{split}_q_emb"]
        answers[split] = Answers.from_csr(ptr, idx, rel)
        for n, qid in enumerate(d[f"{split}_q_ids"]):
            rows = idx[ptr[n] : ptr[n + 1]]
            entries.append(LabelledQuery(
                query_id=f"{split}-{qid}", vector=queries[split][n], relevant_ids=[ids[r] for r in rows],
                grades=[float(g) for g in rel[ptr[n] : ptr[n + 1]]], timestamp=1_700_000_000.0 + len(entries),
                split=SPLIT_OF[split],
            ))
    return SciFact(ids, d["doc_emb"], queries, answers, entries)

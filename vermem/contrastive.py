"""The two contrastive pair sets of Lasy et al. (docs/study-a.md §4, §5), on token ids.

Both take memorized samples with their divergence point d (0-based: full[d] is the first
token the model does not reproduce from full[:d]) and g, the greedy continuation of
full[:d] (so g[0] is the model's token at position d).

- Branch Comparison (maintenance): clean = full[:d] + full[d], corrupt = full[:d] + g[0],
  answer = full[d+1], wrong = g[1].
- Memorization Decision (initiation): clean = h[:d] of a memorized sample h, corrupt = c[:d]
  of the most similar non-memorized sample c whose own token at d, and whose model's greedy
  token after c[:d], is h's true token at d. answer = the model's greedy token after h[:d],
  wrong = that target.

Every dropped sample is counted by reason; every pair keeps the logit difference of its
clean and corrupt runs, and a pair whose clean run does not prefer the answer (or whose
corrupt run does not prefer the wrong token) is flagged, not removed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import polars as pl
import torch

from .corpus import sample_key
from .tasks import (  # noqa: F401  (the task names, re-exported)
    BRANCH,
    CONTROL,
    DECISION,
    base_task,
    control_task,
    is_control,
)

# the parts of the document split, in the order their fractions are cut
PARTS = ("attribution", "selection", "evaluation")

PAIR_SCHEMA = {
    "task": pl.String, "subset": pl.String, "doc_id": pl.String, "offset": pl.Int32,
    "corrupt_doc_id": pl.String, "corrupt_offset": pl.Int32, "d": pl.Int32,
    "clean": pl.List(pl.Int32), "corrupt": pl.List(pl.Int32),
    "answer": pl.Int32, "wrong": pl.Int32, "similarity": pl.Float64,
}


def branch_pairs(div: pl.DataFrame) -> tuple[pl.DataFrame, Counter]:
    """Branch Comparison pairs from divergence rows (doc_id, offset, subset, full, d,
    generation)."""
    rows, drops = [], Counter()
    for r in div.iter_rows(named=True):
        if r["d"] is None:
            drops[r["subset"], "no divergence point"] += 1
            continue
        full, d, g = r["full"], r["d"], r["generation"]
        if full[d] == g[0]:
            drops[r["subset"], "first tokens agree"] += 1
        elif d + 1 >= len(full) or len(g) < 2:
            drops[r["subset"], "no token after the divergence"] += 1
        elif full[d + 1] == g[1]:
            drops[r["subset"], "second tokens agree"] += 1
        else:
            rows.append({"task": BRANCH, "subset": r["subset"], "doc_id": r["doc_id"],
                         "offset": r["offset"], "corrupt_doc_id": r["doc_id"],
                         "corrupt_offset": r["offset"], "d": d,
                         "clean": full[:d] + [full[d]], "corrupt": full[:d] + [g[0]],
                         "answer": full[d + 1], "wrong": g[1], "similarity": None})
    return pl.DataFrame(rows, schema=PAIR_SCHEMA), drops


@torch.no_grad()
def prefix_states(model, fulls: Sequence[Sequence[int]], lengths: Sequence[Sequence[int]],
                  batch_size: int) -> list[dict[int, tuple[torch.Tensor, int]]]:
    """For sequence i and each prefix length t in lengths[i]: (mean of the last hidden
    state over [:t], the model's greedy token after [:t]). One causal forward pass per
    sequence serves every length; only the asked-for lengths are kept (memory ~ pairs)."""
    dev = next(model.parameters()).device
    out: list[dict[int, tuple[torch.Tensor, int]]] = [{} for _ in fulls]
    todo = [i for i, ls in enumerate(lengths) if ls]
    for j in range(0, len(todo), batch_size):
        idx = todo[j: j + batch_size]
        x = torch.tensor([fulls[i] for i in idx], dtype=torch.long, device=dev)
        res = model(input_ids=x, output_hidden_states=True)
        h = res.hidden_states[-1].float()  # [B, T, D]
        steps = torch.arange(1, x.shape[1] + 1, device=dev, dtype=h.dtype)[None, :, None]
        pooled = (h.cumsum(1) / steps).cpu()  # [B, T, D]: pooled[:, t-1] is over [:t]
        greedy = res.logits.argmax(-1).cpu()  # [B, T]: greedy[:, t-1] follows [:t]
        for b, i in enumerate(idx):
            for t in lengths[i]:
                out[i][t] = (pooled[b, t - 1], int(greedy[b, t - 1]))
    return out


def _codes(values: Sequence[str], vocab: dict[str, int]) -> torch.Tensor:
    return torch.tensor([vocab.setdefault(v, len(vocab)) for v in values], dtype=torch.long)


def decision_pairs(model, div: pl.DataFrame, nonmem: pl.DataFrame, batch_size: int,
                   same_subset: bool = True, parts: Mapping[str, str] | None = None,
                   ) -> tuple[pl.DataFrame, Counter]:
    """Memorization Decision pairs.

    div: memorized rows (doc_id, offset, subset, full, d); nonmem: non-memorized rows
    (doc_id, offset, subset, full). Candidates for a memorized h are non-memorized samples
    of other documents (of h's subset when `same_subset`, of h's document part when
    `parts`, doc_id -> part, is given) whose token at d is h's; they are ranked by cosine
    similarity of the mean-pooled last hidden state over [:d], and the first whose greedy
    token after [:d] is that target is taken.
    """
    drops: Counter = Counter()
    non_full = nonmem["full"].to_list()
    non_doc = nonmem["doc_id"].to_list()
    mem = list(div.iter_rows(named=True))
    width = len(non_full[0]) if non_full else 0
    table = torch.tensor(non_full, dtype=torch.long).reshape(len(non_full), width)  # [N, T]
    vocab: dict[str, int] = {}
    subset_col = _codes(nonmem["subset"].to_list(), vocab)
    doc_col = _codes(non_doc, vocab)
    part_col = _codes([parts[d] for d in non_doc], vocab) if parts is not None else None
    cands: list[list[int]] = []
    for r in mem:
        d = r["d"]
        if d is None or not len(non_full):
            cands.append([])
            continue
        hit = (table[:, d] == r["full"][d]) & (doc_col != vocab.get(r["doc_id"], -1))
        if same_subset:
            hit &= subset_col == vocab.get(r["subset"], -1)
        if part_col is not None:
            hit &= part_col == vocab.get(parts[r["doc_id"]], -1)
        cands.append(hit.nonzero().flatten().tolist())
    need: list[set[int]] = [set() for _ in non_full]
    for r, cs in zip(mem, cands, strict=True):
        for c in cs:
            need[c].add(r["d"])
    non_states = prefix_states(model, non_full, [sorted(n) for n in need], batch_size)
    mem_states = prefix_states(model, [r["full"] for r in mem],
                               [[] if r["d"] is None else [r["d"]] for r in mem], batch_size)
    rows = []
    for r, cs, st in zip(mem, cands, mem_states, strict=True):
        d = r["d"]
        if d is None:
            drops[r["subset"], "no divergence point"] += 1
            continue
        target = r["full"][d]
        q, answer = st[d]
        if answer == target:  # cannot happen at a divergence point; kept as a guard
            drops[r["subset"], "model reproduces the target"] += 1
            continue
        if not cs:
            drops[r["subset"], "no non-memorized sample with the target at d"] += 1
            continue
        keys = torch.stack([non_states[c][d][0] for c in cs])
        sims = torch.nn.functional.cosine_similarity(keys, q[None], dim=-1)
        chosen = next(((cs[j], float(sims[j])) for j in sims.argsort(descending=True).tolist()
                       if non_states[cs[j]][d][1] == target), None)
        if chosen is None:
            drops[r["subset"], "no candidate whose greedy token is the target"] += 1
            continue
        c, sim = chosen
        rows.append({"task": DECISION, "subset": r["subset"], "doc_id": r["doc_id"],
                     "offset": r["offset"], "corrupt_doc_id": non_doc[c],
                     "corrupt_offset": nonmem["offset"][c], "d": d, "clean": r["full"][:d],
                     "corrupt": non_full[c][:d], "answer": answer, "wrong": target,
                     "similarity": sim})
    return pl.DataFrame(rows, schema=PAIR_SCHEMA), drops


@torch.no_grad()
def logit_diffs(model, pairs: pl.DataFrame, batch_size: int) -> pl.DataFrame:
    """Clean and corrupt logit(answer) - logit(wrong) at the last position, and whether each
    run orders them as the task expects (clean > 0 > corrupt)."""
    dev = next(model.parameters()).device
    out = {"clean_logit_diff": [], "corrupt_logit_diff": []}
    # pairs of one length batch without padding
    order = sorted(range(pairs.height), key=lambda i: len(pairs["clean"][i]))
    vals: dict[int, tuple[float, float]] = {}
    for i in range(0, len(order), batch_size):
        chunk = order[i: i + batch_size]
        by_len: dict[int, list[int]] = {}
        for j in chunk:
            by_len.setdefault(len(pairs["clean"][j]), []).append(j)
        for idx in by_len.values():
            ans = torch.tensor([pairs["answer"][j] for j in idx], device=dev)
            wr = torch.tensor([pairs["wrong"][j] for j in idx], device=dev)
            res = []
            for col in ("clean", "corrupt"):
                x = torch.tensor([pairs[col][j] for j in idx], dtype=torch.long, device=dev)
                logits = model(input_ids=x).logits[:, -1].float()
                res.append((logits.gather(1, ans[:, None]) - logits.gather(1, wr[:, None]))[:, 0])
            for j, a, b in zip(idx, res[0].tolist(), res[1].tolist(), strict=True):
                vals[j] = (a, b)
    for i in range(pairs.height):
        a, b = vals.get(i, (float("nan"), float("nan")))
        out["clean_logit_diff"].append(a)
        out["corrupt_logit_diff"].append(b)
    return pairs.with_columns(
        pl.Series("clean_logit_diff", out["clean_logit_diff"], dtype=pl.Float64),
        pl.Series("corrupt_logit_diff", out["corrupt_logit_diff"], dtype=pl.Float64),
    ).with_columns(
        (pl.col("clean_logit_diff") > 0).alias("clean_prefers_answer"),
        (pl.col("corrupt_logit_diff") < 0).alias("corrupt_prefers_wrong"),
    )


def part_key(seed: int, doc_id: str) -> int:
    """A seeded hash of a document id that ranks documents for the split (salted, so it is
    independent of the corpus sampling key)."""
    return sample_key(seed, f"part:{doc_id}")


def document_parts(docs: pl.DataFrame, seed: int,
                   fractions: Mapping[str, float]) -> dict[str, str]:
    """doc_id -> part ("attribution", "selection" or "evaluation") of every document.

    docs: one row per document (doc_id, subset), the model-independent pool (the corpus
    candidates), so that every model, task and metric sees the same parts. Within each
    subset the documents are ranked by `part_key` and cut by the cumulative fractions:
    each subset gets each part in its share, up to rounding.
    """
    out: dict[str, str] = {}
    for _, g in docs.unique("doc_id").group_by("subset"):
        ids = sorted(g["doc_id"].to_list(), key=lambda d: (part_key(seed, d), d))
        cuts, acc = [], 0.0
        for part in PARTS:
            acc += fractions[part]
            cuts.append(round(acc * len(ids)))
        cuts[-1] = len(ids)
        start = 0
        for part, end in zip(PARTS, cuts, strict=True):
            out.update((d, part) for d in ids[start:end])
            start = end
    return out


def split(pairs: pl.DataFrame, parts: Mapping[str, str]) -> pl.DataFrame:
    """The pairs with `split`, the part of their (clean) document. A pair whose two
    documents lie in different parts, or whose document has no part, is an error."""
    clean = pairs["doc_id"].to_list()
    missing = sorted({d for d in clean + pairs["corrupt_doc_id"].to_list() if d not in parts})
    if missing:
        raise ValueError(f"{len(missing)} pair document(s) not in the split's document pool, "
                         f"e.g. {missing[0]!r}")
    crossing = [(a, b) for a, b in zip(clean, pairs["corrupt_doc_id"], strict=True)
                if parts[a] != parts[b]]
    if crossing:
        raise ValueError(f"{len(crossing)} pair(s) cross parts, e.g. {crossing[0]}")
    return pairs.with_columns(pl.Series("split", [parts[d] for d in clean], dtype=pl.String))


def build(model, labels: pl.DataFrame, div: pl.DataFrame, docs: pl.DataFrame,
          batch_size: int, seed: int, fractions: Mapping[str, float],
          same_subset: bool) -> tuple[pl.DataFrame, dict]:
    """Both pair sets from the labels and divergence tables, split by document (`docs`:
    doc_id, subset of the corpus candidates), with a summary of pair and document counts
    per part, ordering checks and drop reasons per task and subset."""
    parts = document_parts(docs, seed, fractions)
    nonmem = (labels.filter(pl.col("label") == "non-memorized")
              .select("doc_id", "offset", "subset",
                      pl.concat_list("prefix", "continuation").alias("full")))
    bc, bc_drops = branch_pairs(div)
    md, md_drops = decision_pairs(model, div, nonmem, batch_size, same_subset, parts)
    pairs = split(logit_diffs(model, pl.concat([bc, md]), batch_size), parts)
    summary: dict = {"split": {"seed": seed, "fractions": dict(fractions), "documents": {}},
                     "divergence": {}, BRANCH: {}, DECISION: {}}
    pool = docs.unique("doc_id").with_columns(
        pl.col("doc_id").replace_strict(parts, return_dtype=pl.String).alias("part"))
    for (subset,), g in sorted(pool.group_by("subset"), key=lambda kv: kv[0]):
        summary["split"]["documents"][subset] = {p: int((g["part"] == p).sum()) for p in PARTS}
    # every labelled subset, with n = 0 where nothing was memorized or no pair got through
    subsets = sorted(set(labels["subset"]) | set(div["subset"]) | set(pairs["subset"]))
    for subset in subsets:
        g = div.filter(pl.col("subset") == subset)
        summary["divergence"][subset] = {"memorized": g.height,
                                         "memorized_documents": g["doc_id"].n_unique(),
                                         "with_divergence": int(g["d"].is_not_null().sum())}
    for task, drops in ((BRANCH, bc_drops), (DECISION, md_drops)):
        for subset in subsets:
            g = pairs.filter((pl.col("task") == task) & (pl.col("subset") == subset))
            summary[task][subset] = {
                "pairs": g.height,
                **{p: int((g["split"] == p).sum()) for p in PARTS},
                "documents": {p: g.filter(pl.col("split") == p)["doc_id"].n_unique()
                              for p in PARTS},
                "clean_not_preferring_answer": int((~g["clean_prefers_answer"]).sum()),
                "corrupt_not_preferring_wrong": int((~g["corrupt_prefers_wrong"]).sum()),
                "dropped": {reason: n for (s, reason), n in sorted(drops.items())
                            if s == subset},
            }
    return pairs, summary

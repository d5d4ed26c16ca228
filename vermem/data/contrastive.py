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

Controls (`controls`): the same two constructions on text the model has NOT memorized, so
that a circuit's faithfulness can be told apart from what any next-token prediction needs.
The pool is the samples labelled non-memorized whose document was seen at most once
(unseen or seen once; every non-memorized sample where duplicate counts are unknown). Each
memorized pair is matched, within its subset and document part, by a pool sample on which
the model's greedy token at the same position d differs from the text (teacher-forced), so
the control's d follows the memorized pairs' distribution exactly:
- Branch Comparison control: clean = x[:d] + x[d], corrupt = x[:d] + g[0], answer = x[d+1],
  wrong = g[1], with g the greedy continuation of x[:d] (the construction above);
- Memorization Decision control: h = that pool sample, c = the most similar non-memorized
  sample of another document (same part) whose token and greedy token at d are h's true
  token (the construction above, with two non-memorized starts).
A match that the construction drops is replaced by the next candidate (at most
`CONTROL_CANDIDATES` per memorized pair); an unmatched pair is counted by reason.

Distant Context (`contrastive.distant_r`, vermem.data.context): clean = the Branch
Comparison clean prompt, corrupt = the same prompt with every token farther than r from the
predicted position taken from a non-memorized window of another document; its control the
same on the Branch Comparison controls' prompts.

Every dropped sample is counted by reason; every pair keeps the logit difference of its
clean and corrupt runs, and a pair whose clean run does not prefer the answer (or whose
corrupt run does not prefer the wrong token) is flagged, not removed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import polars as pl
import torch

from vermem.core.vocabulary import (
    BRANCH,
    DECISION,
    DISTANT,
    PARTS,
    base_task,
    control_task,
    is_control,
)
from vermem.data import context
from vermem.data.corpus import sample_key
from vermem.data.settings import PairSettings

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
                   non_pred: torch.Tensor | None = None) -> tuple[pl.DataFrame, Counter]:
    """Memorization Decision pairs.

    div: memorized rows (doc_id, offset, subset, full, d); nonmem: non-memorized rows
    (doc_id, offset, subset, full). Candidates for a memorized h are non-memorized samples
    of other documents (of h's subset when `same_subset`, of h's document part when
    `parts`, doc_id -> part, is given) whose token at d is h's; they are ranked by cosine
    similarity of the mean-pooled last hidden state over [:d], and the first whose greedy
    token after [:d] is that target is taken. `non_pred` ([N, T], `teacher_forced` of the
    non-memorized rows) leaves out the candidates whose greedy token is not the target
    before any hidden state is computed: the same choice, fewer forward passes. Rows of
    `div` with `_control` true are constructed too, their drops not counted.
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
        if non_pred is not None:
            hit &= non_pred[:, d - 1] == r["full"][d]
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
        count = drops if not r.get("_control") else Counter()
        if d is None:
            count[r["subset"], "no divergence point"] += 1
            continue
        target = r["full"][d]
        q, answer = st[d]
        if answer == target:  # cannot happen at a divergence point; kept as a guard
            count[r["subset"], "model reproduces the target"] += 1
            continue
        if not cs:
            count[r["subset"], ("no non-memorized sample with the target at d"
                                if non_pred is None else
                                "no non-memorized sample with the target at d whose greedy "
                                "token is the target")] += 1
            continue
        keys = torch.stack([non_states[c][d][0] for c in cs])
        sims = torch.nn.functional.cosine_similarity(keys, q[None], dim=-1)
        chosen = next(((cs[j], float(sims[j])) for j in sims.argsort(descending=True).tolist()
                       if non_states[cs[j]][d][1] == target), None)
        if chosen is None:
            count[r["subset"], "no candidate whose greedy token is the target"] += 1
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


# -- controls: the same constructions on non-memorized text ----------------------------------

CONTROL_CANDIDATES = 4  # pool samples tried per memorized pair before it counts as unmatched


def control_pool(labels: pl.DataFrame, seed: int) -> pl.DataFrame:
    """Non-memorized samples of documents seen at most once (doc_id, offset, subset, full),
    spread over documents: one seeded window of every document, then a second, ..."""
    q = labels.filter(pl.col("label") == "non-memorized")
    if "dup_count" in q.columns:
        q = q.filter(pl.col("dup_count").is_null() | (pl.col("dup_count") <= 1))
    q = q.select("doc_id", "offset", "subset",
                 pl.concat_list("prefix", "continuation").alias("full"))
    keyed = q.with_columns(
        pl.Series("_doc", [sample_key(seed, f"control:{d}") for d in q["doc_id"]],
                  dtype=pl.Int64),
        pl.Series("_win", [sample_key(seed, f"control:{d}:{o}")
                           for d, o in zip(q["doc_id"], q["offset"], strict=True)],
                  dtype=pl.Int64))
    keyed = keyed.with_columns(pl.col("_win").rank("ordinal").over("doc_id").alias("_r"))
    return keyed.sort("_r", "_doc", "_win").drop("_doc", "_win", "_r")


@torch.no_grad()
def teacher_forced(model, fulls: Sequence[Sequence[int]], batch_size: int) -> torch.Tensor:
    """Greedy token after every prefix of equal-length sequences: [N, T], where [:, t-1]
    follows full[:t]."""
    dev = next(model.parameters()).device
    if not fulls:
        return torch.zeros(0, 0, dtype=torch.long)
    x = torch.tensor(list(fulls), dtype=torch.long)
    return torch.cat([model(input_ids=x[i: i + batch_size].to(dev)).logits.argmax(-1).cpu()
                      for i in range(0, len(x), batch_size)])


def next_tokens(model, prompts: Sequence[Sequence[int]], batch_size: int) -> list[int]:
    """The model's greedy token after each prompt (prompts of one length batch unpadded)."""
    return [g[0] for g in context.greedy_runs(model, prompts, 1, batch_size)]


def match_positions(targets: Sequence[int], fulls: Sequence[Sequence[int]],
                    pred: torch.Tensor, per_target: int) -> list[list[int]]:
    """For each target position d (in order), up to `per_target` pool rows (in pool order,
    each used once) on which the greedy token after full[:d] differs from full[d] and
    full[d + 1] exists. pred: `teacher_forced` of the pool. -> candidate rows per target."""
    out: list[list[int]] = [[] for _ in targets]
    want: dict[int, list[int]] = {}
    for i, d in enumerate(targets):
        want.setdefault(d, []).append(i)
    # fill round by round: every target gets its first candidate before any its second
    queue = {d: [i for _ in range(per_target) for i in idx] for d, idx in want.items()}
    for row, full in enumerate(fulls):
        if not queue:
            break
        T = len(full)
        miss = [d for d in queue if 1 <= d < T - 1 and int(pred[row, d - 1]) != full[d]]
        if not miss:
            continue
        d = max(miss, key=lambda v: (len(queue[v]), -v))  # the most wanted position
        out[queue[d].pop(0)].append(row)
        if not queue[d]:
            del queue[d]
    return out


def _first_per_target(pairs: pl.DataFrame, cand: pl.DataFrame) -> pl.DataFrame:
    """Of the constructed pairs, the first candidate's pair for each target."""
    if not pairs.height:
        return pairs
    keyed = pairs.join(cand.select("doc_id", "offset", "_target", "_rank"),
                       on=["doc_id", "offset"], how="left")
    return (keyed.sort("_target", "_rank").unique("_target", keep="first", maintain_order=True)
            .drop("_target", "_rank"))


def control_pairs(model, memorized: pl.DataFrame, labels: pl.DataFrame,
                  nonmem: pl.DataFrame, parts: Mapping[str, str], settings: PairSettings,
                  non_pred: torch.Tensor | None = None, div: pl.DataFrame | None = None
                  ) -> tuple[pl.DataFrame, Counter, tuple[pl.DataFrame, Counter] | None]:
    """Control pairs of both tasks, one per memorized pair where the pool allows (see the
    module docstring). memorized: the memorized pairs (task, subset, doc_id, offset, d);
    labels: the labels table (the pool); nonmem: non-memorized rows (doc_id, offset,
    subset, full), the Memorization Decision candidates as for memorized pairs; non_pred:
    their `teacher_forced` tokens (computed when not given).

    With `div` (the divergence rows), the memorized samples' Memorization Decision pairs are
    built in the same pass as their controls (one forward over the non-memorized samples
    serves both) and returned too, and each is matched by a control pair at its own subset,
    part and d. -> (control pairs with tasks `control_task(...)`, drops by (task, subset,
    reason), (the memorized Memorization Decision pairs, their drops) or None). `settings`:
    the batch size, the pool's seed and whether Decision candidates share the subset."""
    batch_size, seed, same_subset = settings.batch_size, settings.seed, settings.same_subset
    if non_pred is None:
        non_pred = teacher_forced(model, nonmem["full"].to_list(), batch_size)
    pool = control_pool(labels, seed)
    row_of = {k: i for i, k in enumerate(zip(nonmem["doc_id"], nonmem["offset"], strict=True))}
    pool = pool.filter(pl.Series([k in row_of for k in zip(pool["doc_id"], pool["offset"],
                                                             strict=True)], dtype=pl.Boolean))
    fulls = pool["full"].to_list()
    pred = non_pred[[row_of[k] for k in zip(pool["doc_id"], pool["offset"], strict=True)]]
    pool_part = [parts.get(d) for d in pool["doc_id"]]
    used: set[int] = set()  # a pool sample serves one control pair of one task
    drops: Counter = Counter()

    def candidates(targets: pl.DataFrame, ctl: str, count: bool = True
                   ) -> tuple[pl.DataFrame, list[str]]:
        """Up to CONTROL_CANDIDATES pool rows per target (subset, doc_id, offset, d); a
        target without one is counted in `drops` when `count`."""
        rows, target_subset = [], []
        keyed = targets.with_columns(pl.col("doc_id").replace_strict(
            parts, default=None, return_dtype=pl.String).alias("_part"))
        for (subset, part), g in sorted(keyed.group_by("subset", "_part"),
                                        key=lambda kv: (kv[0][0], kv[0][1] or "")):
            sel = [i for i, (s, p) in enumerate(zip(pool["subset"], pool_part, strict=True))
                   if s == subset and p == part and i not in used]
            ds = g.sort("doc_id", "offset", *(["answer"] if "answer" in g.columns else []))["d"]
            ds = ds.to_list()
            cands = (match_positions(ds, [fulls[i] for i in sel], pred[sel],
                                     CONTROL_CANDIDATES) if sel else [[] for _ in ds])
            for t, cs in enumerate(cands):
                tid = len(target_subset)
                target_subset.append(subset)
                if not cs and count:
                    drops[ctl, subset, "no non-memorized sample with a greedy miss at d"] += 1
                for rank, j in enumerate(cs):
                    i = sel[j]
                    used.add(i)
                    rows.append({"doc_id": pool["doc_id"][i], "offset": pool["offset"][i],
                                 "subset": subset, "full": fulls[i], "d": ds[t],
                                 "g0": int(pred[i, ds[t] - 1]), "_target": tid,
                                 "_rank": rank, "_part": part})
        return pl.DataFrame(rows, schema=CANDIDATE_SCHEMA), target_subset

    def lost(cand, made, target_subset, ctl):
        got = set(cand.join(made.select("doc_id", "offset"), on=["doc_id", "offset"])
                  ["_target"].to_list())
        for t in sorted(set(cand["_target"].to_list()) - got):
            drops[ctl, target_subset[t], "every candidate dropped by the construction"] += 1

    # Branch Comparison: the branch construction on each candidate, the first kept
    ctl = control_task(BRANCH)
    cand, ts = candidates(memorized.filter(pl.col("task") == BRANCH), ctl)
    g1 = next_tokens(model, [f[:d] + [g0] for f, d, g0 in zip(cand["full"].to_list(),
                                                                cand["d"], cand["g0"],
                                                                strict=True)], batch_size)
    made, _ = branch_pairs(cand.with_columns(pl.Series(
        "generation", [[a, b] for a, b in zip(cand["g0"], g1, strict=True)],
        dtype=pl.List(pl.Int32))))
    bc = _first_per_target(made, cand)
    lost(cand, bc, ts, ctl)
    # the candidates not kept go back to the pool for the other task
    kept = set(zip(bc["doc_id"], bc["offset"], strict=True))
    used.clear()
    used.update(i for i, k in enumerate(zip(pool["doc_id"], pool["offset"], strict=True))
                if k in kept)

    # Memorization Decision: one construction pass for the memorized samples (with `div`)
    # and every candidate
    ctl = control_task(DECISION)
    cols = ["doc_id", "offset", "subset", "full", "d"]
    if div is not None:
        # candidates for every memorized sample with a d; what counts per memorized pair is
        # whether its Memorization Decision pair gets a control at its d (_match_same_d)
        targets = div.filter(pl.col("d").is_not_null())
        cand, ts = candidates(targets, ctl, count=False)
        both = pl.concat([div.select(cols).with_columns(pl.lit(False).alias("_control")),
                          cand.select(cols).with_columns(pl.lit(True).alias("_control"))])
    else:
        cand, ts = candidates(memorized.filter(pl.col("task") == DECISION), ctl)
        both = cand.select(cols).with_columns(pl.lit(True).alias("_control"))
    made, md_drops = decision_pairs(model, both, nonmem, batch_size, same_subset, parts,
                                    non_pred)
    keys = cand.select("doc_id", "offset", "_target", "_rank", "_part")
    made_ctl = made.join(keys, on=["doc_id", "offset"], how="inner")
    if div is None:
        md = _first_per_target(made, cand)
        lost(cand, md, ts, ctl)
        memorized_md = None
    else:
        mem_md = made.join(div.select("doc_id", "offset"), on=["doc_id", "offset"],
                           how="semi")
        md = _match_same_d(mem_md, made_ctl, parts, drops, ctl)
        memorized_md = (mem_md, md_drops)
    out = [bc.with_columns(pl.lit(control_task(BRANCH)).alias("task")),
           md.with_columns(pl.lit(ctl).alias("task"))]
    return pl.concat([o.select(list(PAIR_SCHEMA)) for o in out]), drops, memorized_md


CANDIDATE_SCHEMA = {"doc_id": pl.String, "offset": pl.Int32, "subset": pl.String,
                    "full": pl.List(pl.Int32), "d": pl.Int32, "g0": pl.Int32,
                    "_target": pl.Int64, "_rank": pl.Int64, "_part": pl.String}


def _match_same_d(memorized: pl.DataFrame, controls: pl.DataFrame, parts: Mapping[str, str],
                  drops: Counter, ctl: str) -> pl.DataFrame:
    """One control pair (of `controls`: constructed candidates with _target, _rank, _part)
    per memorized pair, at the same subset, part and d, the lowest-ranked first; each
    control used once. Unmatched memorized pairs are counted in `drops`."""
    avail: dict[tuple, list[int]] = {}
    ranked = controls.sort("_rank", "_target", "doc_id", "offset")
    for i, (s, p, d) in enumerate(zip(ranked["subset"], ranked["_part"], ranked["d"],
                                      strict=True)):
        avail.setdefault((s, p, d), []).append(i)
    keep = []
    for r in memorized.sort("doc_id", "offset").iter_rows(named=True):
        free = avail.get((r["subset"], parts.get(r["doc_id"]), r["d"]))
        if free:
            keep.append(free.pop(0))
        else:
            drops[ctl, r["subset"], "no control pair at the same d"] += 1
    return ranked[sorted(keep)].drop("_target", "_rank", "_part")


def part_key(seed: int, doc_id: str) -> int:
    """A seeded hash of a document id that ranks documents for the split (salted, so it is
    independent of the corpus sampling key)."""
    return sample_key(seed, f"part:{doc_id}")


def _apportion(n: int, fractions: Mapping[str, float], carry: dict[str, float]
               ) -> list[int]:
    """Counts per part (PARTS order) of n documents: the largest-remainder rounding of
    fractions x n + carry, where `carry` (updated in place) holds what earlier groups of the
    same stratum were given too much (negative) or too little (positive)."""
    want = [fractions[p] * n + carry.get(p, 0.0) for p in PARTS]
    got = [max(0, int(w)) for w in want]
    while sum(got) > n:  # a carried deficit can ask for less than nothing elsewhere
        got[max(range(len(got)), key=lambda i: got[i] - want[i])] -= 1
    for i in sorted(range(len(PARTS)), key=lambda i: (-(want[i] - got[i]), i))[: n - sum(got)]:
        got[i] += 1
    for p, w, g in zip(PARTS, want, got, strict=True):
        carry[p] = w - g
    return got


def document_parts(docs: pl.DataFrame, seed: int, fractions: Mapping[str, float],
                   strata: Mapping[str, object] | None = None) -> dict[str, str]:
    """doc_id -> part ("attribution", "selection" or "evaluation") of every document.

    docs: one row per document (doc_id, subset), the model-independent pool (the corpus
    candidates), so that every task and metric sees the same parts. Within each subset the
    documents are ranked by `part_key` and cut by the cumulative fractions: each part gets
    its share, up to rounding.

    With `strata` (doc_id -> a label, e.g. the organism's duplicate count) each stratum of
    each subset is cut by the fractions on its own, so that the few documents that can be
    memorized are shared out by the fractions instead of falling into the parts by chance;
    a stratum's rounding is carried from one subset to the next (largest remainders), so
    that a stratum of two documents per subset still reaches every part over the subsets.
    A subset's part then differs from its share by at most one document per stratum.
    """
    out: dict[str, str] = {}
    pool = docs.unique("doc_id")
    pool = pool.with_columns(pl.Series(
        "_stratum", [None if strata is None else str(strata.get(d, "")) for d in pool["doc_id"]],
        dtype=pl.String))
    carries: dict[str | None, dict[str, float]] = {}
    for (_subset, stratum), g in sorted(pool.group_by("subset", "_stratum"),
                                       key=lambda kv: (str(kv[0][1]), kv[0][0])):
        ids = sorted(g["doc_id"].to_list(), key=lambda d: (part_key(seed, d), d))
        if strata is None:  # cumulative cuts, per subset
            cuts, acc = [], 0.0
            for part in PARTS:
                acc += fractions[part]
                cuts.append(round(acc * len(ids)))
            cuts[-1] = len(ids)
        else:
            counts = _apportion(len(ids), fractions, carries.setdefault(stratum, {}))
            cuts = [sum(counts[: i + 1]) for i in range(len(PARTS))]
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
          settings: PairSettings, strata: Mapping[str, object] | None = None
          ) -> tuple[pl.DataFrame, dict]:
    """Both pair sets from the labels and divergence tables, split by document (`docs`:
    doc_id, subset of the corpus candidates), with a summary of pair and document counts
    per part, ordering checks and drop reasons per task and subset; with `controls`, the
    control pair sets of both tasks too (`control_pairs`), counted the same way; `strata`:
    doc_id -> stratum of the split (`document_parts`), e.g. the organism's duplicate counts.
    `settings` (PairSettings): the batch size, the split's seed and shares, the Decision
    candidates' subset and whether controls are built."""
    batch_size, same_subset, controls = (settings.batch_size, settings.same_subset,
                                         settings.controls)
    parts = document_parts(docs, settings.seed, settings.fractions, strata)
    nonmem = (labels.filter(pl.col("label") == "non-memorized")
              .select("doc_id", "offset", "subset",
                      pl.concat_list("prefix", "continuation").alias("full")))
    bc, bc_drops = branch_pairs(div)
    # greedy tokens of every non-memorized sample, once: the decision candidates' filter and
    # the control pool's positions
    non_pred = teacher_forced(model, nonmem["full"].to_list(), batch_size)
    if not controls:
        md, md_drops = decision_pairs(model, div, nonmem, batch_size, same_subset, parts,
                                      non_pred)
    drops_of = {BRANCH: bc_drops}
    sets = [bc]
    if controls:
        ctl, ctl_drops, (md, md_drops) = control_pairs(model, bc, labels, nonmem, parts,
                                                       settings, non_pred, div)
    drops_of[DECISION] = md_drops
    sets.append(md)
    if controls:
        sets.append(ctl)
        for task in (BRANCH, DECISION):
            drops_of[control_task(task)] = Counter(
                {(s, why): n for (t, s, why), n in ctl_drops.items()
                 if t == control_task(task)})
    if settings.distant_r is not None:  # the third task, on the Branch Comparison prompts
        rows = context.samples(pl.concat(sets), labels, parts)
        tokens, keys, _ = source_windows(rows, labels, parts, settings.seed)
        dc, dc_drops = distant_pairs(model, rows, tokens, keys, settings.distant_r,
                                             batch_size)
        sets.append(dc)
        for task in [DISTANT] + ([control_task(DISTANT)] if controls else []):
            drops_of[task] = Counter({(s, why): n for (t, s, why), n in dc_drops.items()
                                      if t == task})
    pairs = split(logit_diffs(model, pl.concat(sets), batch_size), parts)
    summary: dict = {"split": {"seed": settings.seed, "fractions": dict(settings.fractions),
                               "stratified": strata is not None, "documents": {}},
                     "divergence": {}, **{task: {} for task in drops_of}}
    pool = docs.unique("doc_id").with_columns(
        pl.col("doc_id").replace_strict(parts, return_dtype=pl.String).alias("part"))
    for (subset,), g in sorted(pool.group_by("subset"), key=lambda kv: kv[0]):
        summary["split"]["documents"][subset] = {p: int((g["part"] == p).sum()) for p in PARTS}
    # every subset of the corpus, with n = 0 where it has no sample (all its documents too
    # short), nothing was memorized or no pair got through
    subsets = sorted(set(docs["subset"]) | set(labels["subset"]) | set(div["subset"])
                     | set(pairs["subset"]))
    for subset in subsets:
        g = div.filter(pl.col("subset") == subset)
        summary["divergence"][subset] = {"memorized": g.height,
                                         "memorized_documents": g["doc_id"].n_unique(),
                                         "with_divergence": int(g["d"].is_not_null().sum())}
    for task, drops in drops_of.items():
        for subset in subsets:
            g = pairs.filter((pl.col("task") == task) & (pl.col("subset") == subset))
            summary[task][subset] = {
                "pairs": g.height,
                **{p: int((g["split"] == p).sum()) for p in PARTS},
                "documents": {p: g.filter(pl.col("split") == p)["doc_id"].n_unique()
                              for p in PARTS},
                "clean_not_preferring_answer": int((~g["clean_prefers_answer"]).sum()),
                "corrupt_not_preferring_wrong": int((~g["corrupt_prefers_wrong"]).sum()),
                "d_mean": g["d"].mean(), "d_median": g["d"].median(),
                "dropped": {reason: n for (s, reason), n in sorted(drops.items())
                            if s == subset},
            }
            if is_control(task):  # what it was matched to
                summary[task][subset]["memorized_pairs"] = summary[base_task(task)][subset][
                    "pairs"]
    return pairs, summary


# -- the Distant Context pair set -----------------------------------------------------------

def distant_pairs(model, rows: pl.DataFrame, source_tokens: Sequence[Sequence[int] | None],
                  source_keys: Sequence[tuple[str, int] | None], r: int, batch_size: int
                  ) -> tuple[pl.DataFrame, Counter]:
    """Distant Context pairs (and their controls, from the control rows of
    `context.samples`) in the pair schema: see vermem.data.context's docstring.
    source_keys: (doc_id, offset) of each row's source, the pair's corrupt document.
    -> (pairs, drops by (task, subset, reason))."""
    drops: Counter = Counter()
    idx, clean, corrupt = [], [], []
    for i, src in enumerate(source_tokens):
        task = DISTANT if rows["group"][i] == "memorized" else control_task(DISTANT)
        p = rows["prompt"][i].to_list()
        if src is None:
            drops[task, rows["subset"][i], "no source window in the subset and part"] += 1
        elif len(p) <= r:
            drops[task, rows["subset"][i], "prompt not longer than r"] += 1
        else:
            idx.append(i)
            clean.append(p)
            corrupt.append(context.distant_replace(p, src, r))
    answer = next_tokens(model, clean, batch_size)
    wrong = next_tokens(model, corrupt, batch_size)
    out = []
    for i, c, x, a, w in zip(idx, clean, corrupt, answer, wrong, strict=True):
        mem = rows["group"][i] == "memorized"
        task = DISTANT if mem else control_task(DISTANT)
        if mem and a != rows["target"][i]:
            drops[task, rows["subset"][i], "clean run does not give the memorized token"] += 1
        elif w == a:
            drops[task, rows["subset"][i], "corrupt run still gives the clean token"] += 1
        else:
            out.append({"task": task, "subset": rows["subset"][i], "doc_id": rows["doc_id"][i],
                        "offset": rows["offset"][i], "corrupt_doc_id": source_keys[i][0],
                        "corrupt_offset": source_keys[i][1], "d": rows["d"][i], "clean": c,
                        "corrupt": x, "answer": a, "wrong": w, "similarity": None})
    return pl.DataFrame(out, schema=PAIR_SCHEMA), drops


def source_windows(rows: pl.DataFrame, labels: pl.DataFrame, parts: Mapping[str, str],
                   seed: int) -> tuple[list[list[int] | None], list[tuple[str, int] | None],
                                       Counter]:
    """Each row's source window from the control pool of `labels`
    (`vermem.data.context.sources`): its tokens, its (doc_id, offset), and the rows without
    one counted by subset."""
    pool = control_pool(labels, seed)
    picks, missing = context.sources(rows, pool, parts, seed)
    full, doc, off = pool["full"], pool["doc_id"], pool["offset"]
    tokens = [None if j is None else full[j].to_list() for j in picks]
    keys = [None if j is None else (doc[j], int(off[j])) for j in picks]
    return tokens, keys, missing

"""Study A's data: from raw text to memorization labels and contrastive pairs.

1. Stand-in corpus (`standin`): an offline Pile-format corpus from the standard library,
   with the planted documents the organism memorizes.
2. Corpus (`corpus`): shards read, documents checked, windows sampled per subset.
3. Labels (`labels`): greedy continuations scored against the true ones; memorized,
   non-memorized or ambiguous by the config's thresholds.
4. Divergence (`divergence`): the first prefix length whose continuation departs from the
   memorized text (BLEU-4 drop).
5. Contrastive pairs (`contrastive`): Branch Comparison and Memorization Decision pairs and
   their non-memorized controls, split by document into attribution, selection and
   evaluation parts.

The samples' and pairs' settings from the config: `settings` (`SampleSettings`,
`PairSettings`).
"""

"""Circuits: evaluation, minimal-circuit search, transfer, specificity and scores.

1. Evaluation (`evaluation`): a circuit is the top k edges of a ranking; its faithfulness
   F is measured by exact patching on held-out pairs, with a bootstrap interval.
2. Search (`search`): the smallest k whose F reaches the target band on the selection
   pairs, reported on the disjoint evaluation pairs next to random circuits.
3. Transfer (`transfer`): each circuit evaluated on the other tasks, subsets and on
   size-matched rankings.
4. Specificity (`specificity`): the memorized pairs' circuit against the controls'.
5. MIB scores (`mib`) and method comparison (`method_comparison`): CPR and CMD of every
   ranking, methods side by side.
6. Checkpoints (`checkpoints`): the final circuits along the training axis.
7. Location (`location`): the circuits against a localized injection's known components.
8. View (`view`): one interactive HTML page per circuit.

Each computation takes one settings object built from the config (`settings`:
`SearchSettings.from_config(config)`, ...), whose `KEYS` are what its rule passes.
"""

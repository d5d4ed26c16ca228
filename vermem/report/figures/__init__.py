"""Figures, drawn from finished tables alone.

1. Common (`common`): saving, notes and empty figures that say why they are empty.
2. Study A (`study_a`, `controls`, `method_scores`, `position_profiles`,
   `circuit_drawing`): labels, pairs, attribution, faithfulness, transfer, MIB, circuits.
3. Checkpoints (`checkpoints`): memorization and circuits along the training axis.
4. Study B (`study_b`): the curves, phases and factor figures.
5. Robustness (`robustness`): every claim's verdict in every seed's run.
"""

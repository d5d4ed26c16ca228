"""What a run concludes: claims, the summary and the figures.

1. Claims (`claims`): each of the paper's claims with its estimate, n and verdict.
2. Summary (`summary`): results/summary.md and its HTML, every number with n and interval.
3. Figures (`figures`): one module per study, drawn from the tables alone.

The claims' settings from the config: `settings.ClaimSettings`.
"""

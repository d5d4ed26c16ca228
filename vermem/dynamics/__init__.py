"""Study B: the dynamics of memorizing random strings (Speicher et al. 2024).

1. Strings (`strings`): random strings over l letters at a set entropy, one token a letter.
2. Training: a fresh model copy per string, fully fine-tuned, measured every epoch.
3. Phases: guessing at the string's own entropy, then memorization, from the curves.
4. Context (Q2) and forgetting (Q3): recall with a local prefix, strings in sequence.
5. Findings (`findings`): the factor tests and their verdicts.
"""

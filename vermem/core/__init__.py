"""The shared core: the vocabulary, statistics, errors, files, progress and names.

Nothing here knows a model or a stage. Every other subpackage may import it; it imports
no other part of vermem (pyproject.toml's import contract, checked by lint-imports). Its
method, as steps other stages use:

1. Vocabulary (`vocabulary`): the task, meaning, verdict, direction and part names every
   stage shares.
2. Names (`naming`): what a config calls its models, checkpoints, subsets and strings.
3. Statistics (`stats`): the cluster bootstrap over documents, Wilson intervals, the one
   rank correlation (its tie rule stated), the one NaN-to-None; one interval per number.
4. Files (`files`): atomic writes of Parquet and JSON with a provenance record.
5. Errors (`errors`) and progress (`progress`): one-line errors; elapsed time and ETA.
6. Settings (`settings`): the base of every stage's settings object, built from the
   config, whose `KEYS` are the config keys a rule passes.
"""

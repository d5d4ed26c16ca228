"""The workflow layer: config checks, resources, the plan and the robustness run.

1. Config (`config`): the schema and the checks a schema cannot make, before any job.
2. Resources (`resources`): each job's memory, GPU and time from the model's shape.
3. Pair forecast (`pair_forecast`): the pairs each cell is expected to get, against the
   minimum its statistics need.
4. Plan (`plan`): the bill of a run before submitting it.
5. Robustness (`robustness`): Study A over several organism and split seeds.
6. Start-up (`startup`): model files read before any job (a GGUF header, an injection's
   components, Study B's letters).
7. Interrupts (`interrupts`): Ctrl-C stops the run's jobs within seconds.
8. The `vermem` command (`cli`) and the config key reference (`config_reference`).
"""

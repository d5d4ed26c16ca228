"""Edge attribution: one graph, one scoring function per method, exact patching.

1. Graph (`graph`): the edges of a model, source by destination, as one dense [S, D]
   tensor; every edge is a view into it.
2. Adapters (`adapters`): each architecture's layers, norms and projections read once.
3. Pair batch (`pair_batch`): clean and corrupt prompts, padded, with the metric.
4. Backends (`backends`): the activations and gradients one forward and backward capture
   (nnsight or plain hooks).
5. Scores (`scoring`): EAP, EAP-IG, EAP-IG-activations and clean-corrupted, per direction.
6. Positions (`positions`): scores bucketed by distance from the predicted token.
7. Exact patching (`patching`): the logits with any set of edges patched, for evaluation.
8. Storage (`storage`, `eap_json`): per-layer tensors in safetensors; the EAP-IG library's
   graph JSON.

A run's settings (method, IG steps, metric, batch, backend): `settings.AttributionSettings`.
"""

"""Token-level TCAV: CAVs per layer, attention-weighted concept sensitivities, runs and statistics
(docs/method.md §2–3)."""

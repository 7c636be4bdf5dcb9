"""Causal concept effects: matched-pair output effects, layer-wise activation patching and CAV
interventions (docs/method.md §6)."""

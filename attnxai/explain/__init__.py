"""Local explanations: attention-Shapley, the baselines it is compared with, faithfulness metrics
(docs/method.md §1, §4–5)."""

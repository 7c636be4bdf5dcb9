"""The ground-truth zoo: small models with planted concepts and measured truths, on which
attnxai's verdicts and defaults are scored (``attnxai bench truth``)."""

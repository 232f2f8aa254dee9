"""How good the risk analysis is: the labelled scenario set and its loader (:mod:`.scenarios`),
the figures of ``bench/risk_eval.py`` (:mod:`.metrics`), and people's feedback exported as
scenarios (:mod:`.feedback_export`)."""

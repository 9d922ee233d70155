"""Evaluation without MLflow: metrics (melanoma triage), the one prediction path (inference, TTA views),
plots, Grad-CAM, acquisition shifts and subgroups."""

"""MLflow models-from-code entry point of the served lesion classifier (see melanoma_lab.serving)."""

import mlflow

from melanoma_lab.serving import LesionClassifier

mlflow.models.set_model(LesionClassifier())

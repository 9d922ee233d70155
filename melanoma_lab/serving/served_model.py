"""MLflow models-from-code entry point of the served lesion classifier (see melanoma_lab.serving.classifier)."""

import mlflow

from melanoma_lab.serving.classifier import LesionClassifier

mlflow.models.set_model(LesionClassifier())

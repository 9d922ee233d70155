"""The trained model in use: the MLflow pyfunc (classifier.py, served_model.py), predict, promote and serve."""

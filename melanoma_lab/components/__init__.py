"""The plug-ins a config chooses by ``_target_``: models (and EfficientNet-Lite with its ImageNet weights),
losses, learning-rate schedules, callbacks, augmentation and class rebalancing. They know nothing of MLflow."""

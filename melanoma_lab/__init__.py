"""melanoma_lab: experiment tracking for dermoscopic skin-lesion classification."""

__version__ = "0.1.0"

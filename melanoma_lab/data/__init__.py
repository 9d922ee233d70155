"""Data sources (ISIC folders, synthetic lesions, download), catalogs, splits and input pipelines."""

from PIL import Image

# Refuse images that would decompress to more than this many pixels (decompression bombs).
Image.MAX_IMAGE_PIXELS = 64_000_000

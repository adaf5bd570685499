"""Data wing: dataset loaders, sklearn's digits, and the model zoo (architectures only)."""

from .datasets import ImageDataset, load_dataset, paper_split
from .digits import digits_images
from .models import MODELS, DigitsCNN, DigitsMLP, build_model, zoo

__all__ = ["MODELS", "ImageDataset", "DigitsCNN", "DigitsMLP", "build_model", "digits_images", "load_dataset",
           "paper_split", "zoo"]

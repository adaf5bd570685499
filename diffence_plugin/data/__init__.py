"""Data wing: dataset loaders, sklearn's digits, and the model zoo (architectures only)."""

from diffence_plugin.data.datasets import ImageDataset, load_dataset, paper_split
from diffence_plugin.data.digits import digits_images
from diffence_plugin.data.models import MODELS, DigitsCNN, DigitsMLP, build_model, zoo

__all__ = ["MODELS", "ImageDataset", "DigitsCNN", "DigitsMLP", "build_model", "digits_images", "load_dataset",
           "paper_split", "zoo"]

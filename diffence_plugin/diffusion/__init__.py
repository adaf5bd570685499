"""Diffusion wing: training the DDPM that Diffence reconstructs with."""

from .train import train_diffusion

__all__ = ["train_diffusion"]

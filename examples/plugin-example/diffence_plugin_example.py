"""A third-party post-inference defense: flatten released probabilities with a temperature (label kept)."""

import torch

from diffence_plugin import hookimpl


class Temperature:
    def __init__(self, temperature: float = 4.0) -> None:
        if temperature < 1:
            raise ValueError(f"temperature must be >= 1, got {temperature}")
        self.temperature = temperature

    def __call__(self, x, probs):
        return torch.softmax(torch.log(torch.as_tensor(probs).clamp_min(1e-30)) / self.temperature, dim=-1)


@hookimpl
def diffence_register_post_inference(register):
    register("temperature", Temperature)

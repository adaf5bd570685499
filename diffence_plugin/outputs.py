"""Named results of the pipeline's steps; shapes in the comments."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Candidates:
    """Everything selection needs for a batch, so several selection rules can share one reconstruction."""

    original_log_probs: torch.Tensor  # (B, K) float64, classifier on the original inputs
    candidate_log_probs: torch.Tensor  # (B, N, K) float64, classifier on the reconstructions
    u: torch.Tensor  # (B,) float64 uniform numbers driving the random choice of each input

    def __len__(self) -> int:
        return self.original_log_probs.shape[0]

    @property
    def nb_classes(self) -> int:
        return self.original_log_probs.shape[-1]

    def subset(self, index) -> "Candidates":
        """The candidates of the inputs at ``index`` (a mask or integer positions)."""
        index = torch.as_tensor(index)
        return Candidates(self.original_log_probs[index], self.candidate_log_probs[index], self.u[index])

    def first(self, n: int) -> "Candidates":
        """The candidates of the first ``n`` reconstructions of every input (a smaller N, same noise)."""
        return Candidates(self.original_log_probs, self.candidate_log_probs[:, :n], self.u)

    def redraw(self, generator: torch.Generator) -> "Candidates":
        """The same reconstructions with fresh selection draws: the spread over the defense's own randomness."""
        return Candidates(self.original_log_probs, self.candidate_log_probs,
                          torch.rand(len(self), generator=generator, dtype=torch.float64))

    @staticmethod
    def cat(parts: list["Candidates"]) -> "Candidates":
        return Candidates(
            original_log_probs=torch.cat([p.original_log_probs for p in parts]),
            candidate_log_probs=torch.cat([p.candidate_log_probs for p in parts]),
            u=torch.cat([p.u for p in parts]),
        )


@dataclass(frozen=True)
class DefenseOutput:
    """What the defense released for a batch."""

    probs: torch.Tensor  # (B, K) float32 released probability vectors
    index: torch.Tensor  # (B,) chosen reconstruction; -1 (select.ORIGINAL): the original; -2 (select.MEAN): the average
    labels: torch.Tensor  # (B,) argmax on the original inputs (equal to probs.argmax for scenarios 1-3)
    images: torch.Tensor | None = None  # (B, C, H, W) chosen reconstruction (the input where index == -1)

"""The plan of one membership audit: a validated table (TOML or JSON) that says everything a run does.

``diffence evaluate CONFIG``, ``diffence demo`` and ``diffence reproduce`` all run a plan through the one
engine (``audit.run``); the demo and the CIFAR presets are plan files shipped in
``diffence_plugin/presets``. A plan names the data and the members, the target (weights to load, or a
recipe to train it), the defender's diffusion model (a folder to load, or how to train it), the defenses by
registered name (a list of names is a pipeline), the attacker (reference models, its own DDPM, which attacks)
and the run (seeds, output folder, device). Every field is checked with an error that names it; unknown keys
are refused. ``resolve`` fills in defaults, so a resolved plan says everything, and the run writes it back
as ``config.json`` (owner-only: it holds the defense's secret seed), which reproduces the same numbers.

Sections and keys (defaults in ``DEFAULTS``):

- ``[data]``: ``npz`` (a file with arrays x (N, C, H, W) in [0, 1] and y) | ``dataset`` (digits, cifar10,
  cifar100, svhn) with ``folder``; a dataset's test split gives the target's test accuracy.
- ``[members]``: ``indices`` (an .npy file) | ``count`` with ``seed``; ``draw = "with_roles"`` draws the
  members and the roles in one permutation of ``[roles].seed`` (the presets' split).
- ``[roles]``: known members/non-members of the ``defender`` and the ``attacker``, ``evaluation`` records of
  each kind, RMIA's ``population`` records, ``canaries`` (that many members and as many non-members made
  maximally vulnerable, audited apart from the average case: the worst case; 0: none) of ``canary_kind``
  ("flipped_labels": a wrong label; "shuffled_pixels": the image's pixels permuted, an out-of-distribution image
  with its label), ``public`` (that many non-members set aside as unlabeled public data for
  ``[diffusion].data = "public"``; taken from what would be the attacker's pool), and their ``seed``.
- ``[target]``: ``model`` (a zoo name or ``package.module:factory``), ``weights`` (safetensors) or
  ``[target.train]`` (``defense``, ``epochs``, ``batch_size``, ``lr``, ``weight_decay``, ``options``).
- ``[diffusion]``: ``path`` (a saved model) or training: ``unet`` ("tiny" or "cifar"), ``width``, ``steps``,
  ``batch_size``, ``max_timestep``, optional ``seconds`` (a time budget: such a run does not reproduce on
  another machine). ``data``: "members" (the target's training set) or "public" (every record that is no
  evaluation, canary or attacker record: the defender's known records, spare members and ``[roles].public``;
  the attacker's own DDPM then trains on the same public data, all of it). ``kind``: "single" (one DDPM on
  that data), "dual" (DualMD: two DDPMs on disjoint halves, ``split_seed`` and ``mode`` "alternate" or
  "keyed") or "distill" (DistillMD: a student of that pair). ``t_choices``: noise steps the defender's
  calibration chooses among (Scenario 1's criterion, once); every Diffence defense then uses the chosen t.
- ``[[defenses]]``: ``name`` (a registered defense, or a list: a pipeline), ``label``, ``options`` (one
  defense's keyword arguments, or for a pipeline a table per name).
- ``[attacks]``: ``threshold``, ``art`` (ART's attacks), ``references`` (LiRA / RMIA reference models),
  ``reference_recipe`` (default: the target's training recipe), ``aware`` (the attacker copies each
  defense), ``augment`` (flipped queries), ``attacker_ddpm_steps`` (default: the defender's),
  ``attacker_ddpm_records`` (how many of its pool records its DDPM trains on; 0: all; under
  ``[diffusion].data = "public"`` it trains on the public data instead), ``selection_draws``,
  ``defense_seeds``, ``plugins`` (attacks registered by plugins, ``diffence_register_attacks``, by name),
  ``labels`` (LiRA on every release's top-1 labels alone, a floor every row's chosen attack may pick; default on),
  ``adaptive`` (the adaptive attacker, ``attacks.adaptive_family``: "repeat", "average" and "label_noise", each
  querying every record ``adaptive_copies`` times; "average" moves the flattest pixels by ``adaptive_step``,
  one grey level: 1/255, or 1/16 for digits; off by default, being as costly as M more audits of every row).
- ``[run]``: ``seed``, ``draw`` (which draw of the defense's and the attacker's randomness: 0, the plan's own
  seeds; k > 0, fresh ones derived from them for every randomised defense, the attacker's reference models and
  its copies of the defenses, while the target and the DDPMs stay as they are; sweep it to repeat an audit
  over those seeds: ``--over run.draw=0,1,2,3,4``), ``out``, ``bootstrap``, ``overwrite``, ``progress``, ``executor``, ``address``,
  ``cache`` (a folder for trained stages and reference models, shared by runs whose stages match, as the
  variants of a sweep are; default: the run's own folder), ``threads`` (torch threads per task; 0: torch's
  current count), ``shard_size``, ``max_batch`` (a cap on
  images per model call; on a CPU the UNet runs the chunk it measures fastest below it), ``compile`` (``torch.compile`` the DDPMs:
  faster on long runs after a first-call cost, see ``Reconstructor.compile``), ``device`` ("auto", "cpu",
  "cuda"), ``channels_last`` (train and run the classifiers and train the DDPMs in channels-last memory
  format on a CPU too: on the 2-core CPU the CPU preset's target trained 26% and its DDPM 10% faster,
  docs/results/speed.md; not bit-identical to the default; CUDA always uses it), ``reconstruct_bf16`` (the DDPM
  reconstructs under bf16 autocast on a CPU too, for the defender and the attacker's copies: for CPUs with
  bf16 units, where Diffence ran 1.2x faster, docs/results/speed.md; a CPU without them warns, being about 10x slower;
  not bit-identical to float32; CUDA always uses bf16), ``defense_seed``
  ("secret": drawn with ``secrets`` and recorded; "derived": from ``[run].seed``, public, for published
  demos only).
- ``[sweep]``: ``over`` (a table of ``--set`` paths, each with a list of values) and ``zip`` (take the lists in
  step instead of their product): the plan runs once per variant, each into its own sub-folder of
  ``[run].out``, sharing one cache of trained stages (``audit.sweep``).

A plan may start from a shipped preset with ``extends = "NAME"``: its tables are merged over the preset's
(``[[defenses]]``, when given, replaces the preset's list).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from diffence_plugin.randomness import experiment_seed

FORMAT = "diffence-plan-v1"
PRESET_FOLDER = Path(__file__).resolve().parents[2] / "presets"


class ConfigError(ValueError):
    """A plan field is missing, unknown, of the wrong type or inconsistent with the data; the message names it."""


class Section(BaseModel):
    """A plan table: unknown keys refused, types strict (an int passes as a float, a bool never as an int)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    def given(self) -> dict[str, Any]:
        """The keys the plan gives (or that have a default), as a plain table."""
        return self.model_dump(exclude_none=True)


class DataSection(Section):
    npz: str | None = None
    dataset: str | None = None
    folder: str | None = None


class MembersSection(Section):
    indices: str | None = None
    count: int | None = None
    seed: int | None = None
    draw: Literal["separate", "with_roles"] = "separate"


class RolesSection(Section):
    defender: int = Field(75, ge=1)
    attacker: int = Field(75, ge=2)
    evaluation: int = Field(150, ge=1)
    population: int = Field(150, ge=0)
    canaries: int = Field(0, ge=0)
    canary_kind: Literal["flipped_labels", "shuffled_pixels"] = "flipped_labels"
    public: int = Field(0, ge=0)
    seed: int = 0


class TrainingRecipe(Section):
    """How a classifier is trained: ``[target.train]``; unset keys take the recipe's defaults."""

    defense: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    options: dict[str, Any] | None = None


class ReferenceRecipe(TrainingRecipe):
    """``[attacks].reference_recipe``: the target's recipe by default, any key overridden, and for a target
    from an import path the ``factory`` that trains one."""

    model: str | None = None
    factory: str | None = None


class TargetSection(Section):
    model: str | None = None
    weights: str | None = None
    nb_classes: int | None = None
    options: dict[str, Any] = {}
    train: TrainingRecipe | None = None


class DiffusionSection(Section):
    path: str | None = None
    unet: Literal["tiny", "cifar"] = "tiny"
    width: int = Field(16, ge=1)
    steps: int = Field(400, ge=1)
    batch_size: int = Field(128, ge=1)
    max_timestep: int = Field(100, ge=1)
    seconds: float | None = Field(None, gt=0)
    lr: float = 2e-4
    t_choices: list[int] = []
    kind: Literal["single", "dual", "distill"] = "single"
    split_seed: int | None = None
    mode: Literal["alternate", "keyed"] = "alternate"
    data: Literal["members", "public"] = "members"


class AttacksSection(Section):
    threshold: bool = True
    art: list[str] = ["bb_rf", "bb_loss_rf"]
    references: int = 8
    reference_recipe: ReferenceRecipe = ReferenceRecipe()
    aware: bool = True
    augment: bool = False
    attacker_ddpm_steps: int | None = Field(None, ge=1)
    attacker_ddpm_records: int | None = None
    selection_draws: int = Field(10, ge=0)
    defense_seeds: int = Field(1, ge=1)
    plugins: list[str] = []
    labels: bool = True
    adaptive: list[Literal["repeat", "average", "label_noise"]] = []
    adaptive_copies: int = Field(8, ge=1)
    adaptive_step: float = Field(1 / 255, gt=0)


class RunSection(Section):
    seed: int = 0
    draw: int = Field(0, ge=0)
    out: str = "audit"
    cache: str | None = None
    bootstrap: int = Field(1000, ge=0)
    overwrite: bool = False
    progress: bool = True
    executor: str = "local"
    address: str = ""
    threads: int = Field(0, ge=0)
    shard_size: int = Field(256, ge=1)
    max_batch: int = Field(1024, ge=1)
    compile: bool = False
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    channels_last: bool = False
    reconstruct_bf16: bool = False
    defense_seed: Literal["secret", "derived"] = "secret"


class SweepSection(Section):
    """``[sweep]``: run the plan once per value of the keys in ``over`` (``--set`` paths), their product or,
    with ``zip``, in step (``audit.sweep``)."""

    over: dict[str, list[Any]] = {}
    zip: bool = False


class DefenseSpec(Section):
    """One row's defense: registered names (more than one: a pipeline), its label, a table of options per name."""

    name: list[str]
    label: str
    options: dict[str, dict[str, Any]]

    @property
    def on_defender_ddpm(self) -> bool:
        """A Diffence stage that reconstructs with the defender's DDPM (it names no saved model of its own)."""
        return "diffence" in self.name and "path" not in self.options["diffence"]


class Plan(Section):
    """A resolved plan: every section with its defaults filled in. Derived facts are properties, computed here
    and nowhere else."""

    format: str = FORMAT
    name: str = "audit"
    description: str = ""
    data: DataSection = DataSection()
    members: MembersSection = MembersSection()
    roles: RolesSection = RolesSection()
    target: TargetSection = TargetSection()
    diffusion: DiffusionSection = DiffusionSection()
    attacks: AttacksSection = AttacksSection()
    run: RunSection = RunSection()
    defenses: list[DefenseSpec] = []
    sweep: SweepSection | None = None

    @property
    def attacker_seed(self) -> int:
        """The seed of everything the attacker draws (its references, its DDPM, its copies): the run's plus one."""
        return self.run.seed + 1

    def redrawn(self, seed: int, purpose: str) -> int:
        """``seed`` itself at ``[run].draw`` 0, else a seed derived from it for this draw: how every randomised
        defense and the attacker get fresh randomness while the target and the DDPMs stay as they are."""
        return seed if self.run.draw == 0 else experiment_seed(seed, f"{purpose}/draw-{self.run.draw}")

    @property
    def attacker_draw_seed(self) -> int:
        """The seed of the attacker's reference models and of its copies of the defenses, redrawn with
        ``[run].draw`` (its DDPM is trained once, from ``attacker_seed``)."""
        return self.redrawn(self.attacker_seed, "attacker")

    @property
    def needs_defender_ddpm(self) -> bool:
        """Whether the run trains or loads the defender's own diffusion model."""
        return any(d.on_defender_ddpm for d in self.defenses)

    @property
    def diffences(self) -> list[DefenseSpec]:
        """The defenses with a Diffence stage."""
        return [d for d in self.defenses if "diffence" in d.name]

    def to_dict(self) -> dict[str, Any]:
        """The plan as a plain table (unset keys left out): what ``config.json`` holds and ``--dry-run`` prints."""
        return self.model_dump(mode="json", exclude_none=True)


SECTION_MODELS: dict[str, type[Section]] = {"data": DataSection, "members": MembersSection, "roles": RolesSection,
                                             "target": TargetSection, "diffusion": DiffusionSection,
                                             "attacks": AttacksSection, "run": RunSection, "sweep": SweepSection}

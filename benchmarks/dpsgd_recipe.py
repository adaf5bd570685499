"""A DP-SGD recipe for the stacking preset's ``cifar_cnn`` on 5,000 CIFAR-10 records, chosen by test accuracy.

The digits example's recipe (SGD with momentum, lr 0.05) trained a CIFAR-10 target to test accuracy 0.200, so
the stacking row for DP-SGD needs a recipe of its own. Each recipe trains once at the privacy target
(epsilon = 8, delta = 1 / (2 * 5,000), opacus' RDP accountant) on 5,000 training images drawn with
``--draw-seed`` and is scored on the first 2,000 CIFAR-10 test images: the defender's own tuning, on images
that are no audit role's records (the roles are drawn from the training file). Recipes are
``EPOCHS,BATCH,LR,OPTIMIZER,CLIP``.

    python benchmarks/dpsgd_recipe.py --data ../shared/data/cifar10 --out runs/dpsgd-recipe.json
    python benchmarks/dpsgd_recipe.py --data ../shared/data/cifar10 30,256,5e-3,adam,1.0

About 150 s per recipe on 2 CPU cores; run it alone.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from diffence_plugin.data.datasets import load_cifar10_npz
from diffence_plugin.defenses.training import train_target

RECIPES = ["30,256,1.0,sgd,1.0", "30,256,0.2,sgd,1.0", "30,256,2e-3,adam,1.0", "30,256,5e-3,adam,1.0",
           "30,256,1e-2,adam,1.0", "30,256,5e-3,adam,0.5", "30,512,5e-3,adam,1.0"]


def train_recipe(recipe: str, x, y, test, *, epsilon: float, seed: int) -> dict:
    """Train ``cifar_cnn`` with DP-SGD at ``recipe`` and return its accuracies, spent epsilon and time."""
    epochs, batch, lr, optimizer, clip = recipe.split(",")
    target = train_target(x, y, defense="dpsgd", model="cifar_cnn", nb_classes=10, epochs=int(epochs),
                          batch_size=int(batch), lr=float(lr), seed=seed, progress=False, test=test,
                          channels_last=True, options={"epsilon": epsilon, "optimizer": optimizer,
                                                       "max_grad_norm": float(clip)})
    m = target.metrics
    return {"recipe": recipe, "test_accuracy": m["test_accuracy"], "train_accuracy": m["train_accuracy"],
            "epsilon": m["epsilon"], "noise_multiplier": m["noise_multiplier"], "seconds": m["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="*", default=RECIPES, help="EPOCHS,BATCH,LR,OPTIMIZER,CLIP")
    parser.add_argument("--data", required=True, help="folder of CIFAR-10's train.npz and test.npz")
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--epsilon", type=float, default=8.0)
    parser.add_argument("--draw-seed", type=int, default=1, help="the draw of the training records")
    parser.add_argument("--seed", type=int, default=0, help="the training's seed")
    parser.add_argument("--out", default=None, help="JSON file for the rows")
    args = parser.parse_args()
    data = load_cifar10_npz(args.data)
    idx = np.random.default_rng(args.draw_seed).permutation(len(data.x_train))[:args.records]
    test = (data.x_test[:2000], data.y_test[:2000])
    rows = []
    print("| epochs,batch,lr,optimizer,clip | test accuracy | train accuracy | epsilon | noise multiplier | s |")
    print("|---|---|---|---|---|---|")
    for recipe in args.recipes:
        r = train_recipe(recipe, data.x_train[idx], data.y_train[idx], test, epsilon=args.epsilon, seed=args.seed)
        rows.append(r)
        print(f"| {recipe} | {r['test_accuracy']:.3f} | {r['train_accuracy']:.3f} | {r['epsilon']:.2f} | "
              f"{r['noise_multiplier']:.2f} | {r['seconds']:.0f} |", flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

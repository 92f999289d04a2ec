"""Masked supervised training alone (the baseline of the new-user check), as a user would write it:

    ssl-multilabel run benchmarks/digits_check/supervised_only.py --out runs/sup --set data.labels_csv=... (see make_data.py)
"""
from ssl_multilabel.cli import run_cli
from ssl_multilabel.recipes import Evaluate, Export, ImageFolder, Recipe, Supervised

RECIPE = Recipe(
    name="supervised_only",
    data=ImageFolder(labels_csv="", image_dir="", image_size=(56, 56), channels=1, test_fraction=0.2),
    steps=[Supervised(backbone="small_cnn"), Evaluate(), Export()],
    seed=0,
)

if __name__ == "__main__":
    run_cli(RECIPE)

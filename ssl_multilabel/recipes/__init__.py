"""Recipes: a data source plus an ordered list of validated steps, run into a resumable run directory.

Example (a recipe script, `python recipes/x.py --out runs/x --set propagate.k=20`):

    from ssl_multilabel.cli import run_cli
    from ssl_multilabel.recipes import Embeddings, Evaluate, Propagate, Recipe

    RECIPE = Recipe(data=Embeddings(), steps=[Propagate(k=10), Evaluate(split="hidden")])

    if __name__ == "__main__":
        run_cli(RECIPE)

Importing this package does not import TensorFlow; steps import it when they run. The
command line of a recipe script (`run_cli`) lives in `ssl_multilabel.cli`, above the recipes.
"""

from ssl_multilabel.recipes.config import Config, RecipeError, param, parse_value
from ssl_multilabel.recipes.data import DataSource, Embeddings, FashionMosaics, ImageFolder, Quickstart, RecipeData
from ssl_multilabel.recipes.runner import (
    Recipe,
    RunState,
    Step,
    StepContext,
    StepResult,
    apply_overrides,
    load_recipe_file,
    read_run,
    resume_run,
    run_recipe,
)
from ssl_multilabel.recipes.steps import (
    Evaluate,
    Export,
    FineTune,
    NeighbourVote,
    NoisyStudent,
    Propagate,
    Report,
    Supervised,
    fill_from_scores,
    propagate_table,
    propagation_scores,
)


__all__ = [
    "Config",
    "DataSource",
    "Embeddings",
    "Evaluate",
    "Export",
    "FashionMosaics",
    "FineTune",
    "ImageFolder",
    "NeighbourVote",
    "NoisyStudent",
    "Propagate",
    "Quickstart",
    "Recipe",
    "RecipeData",
    "RecipeError",
    "Report",
    "RunState",
    "Step",
    "StepContext",
    "StepResult",
    "Supervised",
    "apply_overrides",
    "fill_from_scores",
    "load_recipe_file",
    "param",
    "parse_value",
    "propagate_table",
    "propagation_scores",
    "read_run",
    "resume_run",
    "run_recipe",
]

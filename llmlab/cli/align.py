"""`llmlab align rm|dpo|ppo|grpo`: reward models, preference optimisation and RL from a YAML config plus dotted
overrides (`llmlab.recipes.align`)."""

from typing import Annotated

import typer

from llmlab.cli.options import CONFIG_COMMAND, PrintConfigOption, config_option, echo_config, overrides_argument

align_app = typer.Typer(
    help="Align a model: reward model (rm), DPO family (dpo), RLHF with PPO (ppo), GRPO (grpo).",
    no_args_is_help=True,
)

HELP = {
    "rm": "Train a reward model: a scalar head on the last real token, Bradley-Terry loss on chosen/rejected pairs.",
    "dpo": "Preference optimisation on chosen/rejected pairs: DPO, IPO, cDPO (label smoothing), hinge, SimPO, ORPO.",
    "ppo": "RLHF with PPO: sampled rollouts, reward model/functions, per-token KL penalty, GAE, clipped losses.",
    "grpo": "GRPO: groups of sampled completions per prompt, group-normalised advantages, KL to the reference.",
}
EXAMPLES = {
    "rm": ("configs/align/rm-sentiment.yaml", "data.train=pairs.jsonl rm.use_margin=true"),
    "dpo": ("configs/align/dpo-lora.yaml", "data.train=pairs.jsonl dpo.loss=ipo dpo.beta=0.1"),
    "ppo": ("configs/align/ppo-sentiment.yaml", "reward.model=runs/rm ppo.kl_coef=0.05"),
    "grpo": ("configs/align/grpo-arithmetic.yaml", "grpo.num_generations=8 grpo.beta=0.04"),
}


def _command(objective: str) -> None:
    example_config, example_overrides = EXAMPLES[objective]

    @align_app.command(objective, context_settings=CONFIG_COMMAND, help=HELP[objective])
    def command(
        overrides: overrides_argument(example_overrides) = None,
        config: config_option(example_config) = None,
        resume: Annotated[
            bool, typer.Option("--resume", help="Continue out_dir/checkpoints/last (same settings, exactly).")
        ] = False,
        print_config: PrintConfigOption = False,
    ) -> None:
        from llmlab.recipes.align import load_align_config

        cfg = load_align_config(config, [*(overrides or []), *(["resume=true"] if resume else [])], objective)
        if print_config:
            echo_config(cfg)
            return
        import os

        from llmlab.recipes.align import align, describe

        summary = align(cfg, say=typer.echo)
        if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 prints the result lines
            typer.echo(describe(summary))


for _objective in ("rm", "dpo", "ppo", "grpo"):
    _command(_objective)


def register(app: typer.Typer) -> None:
    """Attach `llmlab align` to the root app."""
    app.add_typer(align_app, name="align")

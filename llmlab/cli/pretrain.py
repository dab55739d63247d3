"""`llmlab pretrain`: train a GPT from a YAML config plus dotted overrides (see `llmlab.recipes.pretrain`)."""

from __future__ import annotations

from typing import Annotated

import typer

from llmlab.cli.options import CONFIG_COMMAND, PrintConfigOption, config_option, echo_config, overrides_argument


def register(app: typer.Typer) -> None:
    """Attach `llmlab pretrain` to the root app."""

    @app.command("pretrain", context_settings=CONFIG_COMMAND)
    def pretrain_cmd(
        overrides: overrides_argument("optim.lr=3e-4 model.n_layer=2 train.max_iters=100") = None,
        config: config_option("configs/pretrain/shakespeare-char.yaml") = None,
        resume: Annotated[bool, typer.Option("--resume", help="Continue from out_dir/checkpoints/last.")] = False,
        print_config: PrintConfigOption = False,
    ) -> None:
        """Pretrain a GPT language model on a prepared corpus (also under torchrun: DDP or FSDP2)."""
        from llmlab.recipes.pretrain import load_pretrain_config, pretrain

        cfg = load_pretrain_config(config, overrides or [])
        if print_config:
            echo_config(cfg)
            return
        pretrain(cfg, resume=resume)

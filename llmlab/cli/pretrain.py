"""`llmlab pretrain`: train a GPT from a YAML config plus dotted overrides (see `llmlab.recipes.pretrain`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Attach `llmlab pretrain` to the root app."""

    @app.command("pretrain", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def pretrain_cmd(
        overrides: Annotated[
            list[str] | None,
            typer.Argument(help="key=value overrides, e.g. optim.lr=3e-4 model.n_layer=2 train.max_iters=100"),
        ] = None,
        config: Annotated[
            Path | None, typer.Option("--config", "-c", help="YAML config, e.g. configs/pretrain/shakespeare-char.yaml")
        ] = None,
        resume: Annotated[bool, typer.Option("--resume", help="Continue from out_dir/checkpoints/last.")] = False,
        print_config: Annotated[
            bool, typer.Option("--print-config", help="Print the resolved config and exit.")
        ] = False,
    ) -> None:
        """Pretrain a GPT language model on a prepared corpus (also under torchrun: DDP or FSDP2)."""
        from llmlab.recipes.pretrain import load_pretrain_config, pretrain

        cfg = load_pretrain_config(config, overrides or [])
        if print_config:
            from llmlab.config import config_to_yaml

            typer.echo(config_to_yaml(cfg).rstrip())
            return
        pretrain(cfg, resume=resume)

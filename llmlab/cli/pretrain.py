"""`llmlab pretrain`: train a GPT from a YAML config plus dotted overrides (see `llmlab.recipes.pretrain`), or,
with ``objective=mlm|mlm_nsp|mlm_sop|electra|span_corruption|text_infilling|simcse|supcon``, an encoder
(`llmlab.recipes.pretrain_objectives`). ``objective=clm`` or none is the decoder pretraining."""

from __future__ import annotations

from typing import Annotated

import typer

from llmlab.cli.options import CONFIG_COMMAND, PrintConfigOption, config_option, echo_config, overrides_argument


def register(app: typer.Typer) -> None:
    """Attach `llmlab pretrain` to the root app."""

    @app.command("pretrain", context_settings=CONFIG_COMMAND)
    def pretrain_cmd(
        overrides: overrides_argument("optim.lr=3e-4 model.n_layer=2 train.max_iters=100 (objective=mlm ...)") = None,
        config: config_option("configs/pretrain/shakespeare-char.yaml") = None,
        resume: Annotated[bool, typer.Option("--resume", help="Continue from out_dir/checkpoints/last.")] = False,
        print_config: PrintConfigOption = False,
    ) -> None:
        """Pretrain a GPT language model on a prepared corpus (also under torchrun: DDP or FSDP2), or an encoder
        with objective=mlm|mlm_nsp|mlm_sop|electra|span_corruption|text_infilling|simcse|supcon."""
        from llmlab.recipes.pretrain_objectives_config import DECODER_OBJECTIVE, objective_name

        overrides = overrides or []
        if objective_name(config, overrides) != DECODER_OBJECTIVE:
            from llmlab.recipes.pretrain_objectives import pretrain_objective
            from llmlab.recipes.pretrain_objectives_config import load_objective_config

            cfg = load_objective_config(config, overrides)
            if print_config:
                echo_config(cfg)
                return
            pretrain_objective(cfg, resume=resume)
            return
        from llmlab.recipes.pretrain import load_pretrain_config, pretrain

        cfg = load_pretrain_config(config, overrides)
        if print_config:
            echo_config(cfg)
            return
        pretrain(cfg, resume=resume)

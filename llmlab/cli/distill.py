"""`llmlab distill`: distil a teacher (default: the packaged SmolLM2) into a student from a YAML config plus
dotted overrides (see `llmlab.recipes.distill`)."""

from __future__ import annotations

from typing import Annotated

import typer

from llmlab.cli.options import CONFIG_COMMAND, PrintConfigOption, config_option, echo_config, overrides_argument


def register(app: typer.Typer) -> None:
    """Attach `llmlab distill` to the root app."""

    @app.command("distill", context_settings=CONFIG_COMMAND)
    def distill_cmd(
        overrides: overrides_argument("data.dir=data/shakespeare-smollm2 kd.temperature=2 kd.alpha=0.5") = None,
        config: config_option("configs/distill/smollm2-to-small.yaml") = None,
        resume: Annotated[bool, typer.Option("--resume", help="Continue from out_dir/checkpoints/last.")] = False,
        print_config: PrintConfigOption = False,
    ) -> None:
        """Distil a teacher into a smaller student (logit KD, hidden/attention transfer, top-k cache, sequence KD)."""
        from llmlab.recipes.distill import distill, load_distill_config

        cfg = load_distill_config(config, overrides or [])
        if print_config:
            echo_config(cfg)
            return
        distill(cfg, resume=resume)

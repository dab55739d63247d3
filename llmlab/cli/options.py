"""Command-line options shared by several commands (one definition, so their names and help stay in step).

The decoding options of `llmlab generate` and `llmlab chat` are generated from the fields of
`SamplingConfig` (flag and help in each field's metadata) by `sampling_options`, each command with its own
defaults; the command receives the options the user gave as one dict, `sampling_given`.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from llmlab.config.sampling import SamplingConfig

ModelOption = Annotated[
    Path | None,
    typer.Option(
        "--checkpoint",
        "-c",
        help="A .gguf file, checkpoint/run folder, Hugging Face folder, or adapter / finetune run folder "
        "(default: SmolLM2-135M-Instruct).",
    ),
]
DeviceOption = Annotated[str, typer.Option("--device", help="torch device, e.g. cpu or cuda.")]
KeepQuantizedOption = Annotated[
    bool,
    typer.Option(
        "--keep-quantized",
        help="Run a Q8_0/Q4_0/Q4_1 .gguf on its int8/int4 weights instead of dequantising them to float32.",
    ),
]
PrintConfigOption = Annotated[bool, typer.Option("--print-config", help="Print the resolved config and exit.")]
CONFIG_COMMAND = {"allow_extra_args": True, "ignore_unknown_options": True}  # context of config-driven commands


def overrides_argument(example: str) -> Any:
    """The trailing `key=value` overrides of a config-driven command; `example` shows a few."""
    return Annotated[list[str] | None, typer.Argument(help=f"key=value overrides, e.g. {example}")]


def config_option(example: str) -> Any:
    """`--config/-c`: the YAML config of a config-driven command; `example` names one in configs/."""
    return Annotated[Path | None, typer.Option("--config", "-c", help=f"YAML config, e.g. {example}")]


def overwrite_option(help_text: str) -> Any:
    """`--overwrite`: replace an earlier llmlab output (`help_text` says which, for this command)."""
    return Annotated[bool, typer.Option("--overwrite", help=help_text)]


def echo_config(cfg: Any) -> None:
    """Print a resolved config as YAML (the `--print-config` answer)."""
    from llmlab.config import config_to_yaml

    typer.echo(config_to_yaml(cfg).rstrip())


# CLI value types that differ from the field's type: repeatable --stop, --early-stopping true|false|never.
_CLI_TYPES: dict[str, Any] = {"stop": list[str], "early_stopping": str}


def _cli_type(name: str, hint: Any) -> Any:
    """The option's value type: the field type without None (typer needs one concrete type)."""
    if name in _CLI_TYPES:
        return _CLI_TYPES[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return "none" if value is None or value == () else str(value)


def _parameter(name: str, hint: Any, defaults: SamplingConfig) -> inspect.Parameter:
    """One generated option: `--flag VALUE`, None when not given (so commands can tell what the user set)."""
    meta = SamplingConfig.__dataclass_fields__[name].metadata
    decls = [meta["flag"]] + ([meta["short"]] if meta["short"] else [])
    help_text = f"{meta['help']} (default {_show(getattr(defaults, name))})"
    annotation = Annotated[_cli_type(name, hint) | None, typer.Option(*decls, help=help_text)]
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)


def sampling_options(defaults: SamplingConfig, names: Sequence[str]) -> Callable[[Callable[..., Any]], Any]:
    """Decorate a typer command with the `SamplingConfig` options `names`; the command gets `sampling_given`.

    `sampling_given` maps each option the user gave to its value (the others are left out), so the command
    builds `defaults.replace(**sampling_given)` and can still tell which options were set.
    """
    hints = typing.get_type_hints(SamplingConfig)
    generated = [_parameter(name, hints[name], defaults) for name in names]

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        own = inspect.signature(command, eval_str=True)
        params = [p for p in own.parameters.values() if p.name != "sampling_given"]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            values = {name: kwargs.pop(name, None) for name in names}
            return command(**kwargs, sampling_given={k: v for k, v in values.items() if v is not None})

        wrapper.__signature__ = own.replace(parameters=[*params, *generated])  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in [*params, *generated]}
        del wrapper.__wrapped__  # typer must read the generated signature, not the command's
        return wrapper

    return decorate

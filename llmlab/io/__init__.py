"""llmlab.io: the lowest layer for files — atomic writes, atomic folder replacement, the output-folder policy and
the file-permission policy that every writing verb shares. No torch."""

from llmlab.io.files import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    building_dir,
    dir_mode,
    file_mode,
    json_safe,
    make_temp_dir,
    read_json,
    read_jsonl_records,
    replace_path,
)
from llmlab.io.outputs import (
    OUTPUT_MARKER,
    building_output,
    check_output_dir,
    check_output_file,
    is_llmlab_output,
    mark_output,
    publish_output,
)

__all__ = [
    "OUTPUT_MARKER",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "building_dir",
    "building_output",
    "check_output_dir",
    "check_output_file",
    "dir_mode",
    "file_mode",
    "is_llmlab_output",
    "make_temp_dir",
    "mark_output",
    "publish_output",
    "json_safe",
    "read_json",
    "read_jsonl_records",
    "replace_path",
]

"""What can be told about a dataset without reading its rows (and without pandas): the path exists,
its format is known, the columns asked for do not clash. `cgtrain validate` stops here; loading
(`cgtrain.data.loading`) starts with the same checks."""
from __future__ import annotations

from pathlib import Path

from cgtrain.data.formats import FORMATS, DatasetError, check_exists, detect_format
from cgtrain.request import DatasetConfig

BASE_COLUMNS = ("id", "code", "label", "group")


def check_segments(cfg: DatasetConfig) -> None:
    clash = [s for s in cfg.segment_columns if s in BASE_COLUMNS]
    if clash:
        raise DatasetError(f"dataset.segment_columns {clash} clash with the loader's own columns "
                           f"{list(BASE_COLUMNS)}; rename the column in the data")
    if cfg.code_column is None and cfg.format == "dir":
        raise DatasetError("format 'dir' reads source files, but dataset.code_column is null; "
                           "name the code column (the files' text lands in it)")


def resolve(cfg: DatasetConfig) -> tuple[Path, str]:
    path = Path(cfg.path).expanduser()
    check_exists(path)
    if not path.is_dir() and not path.is_file():
        raise DatasetError(f"dataset.path {path} is not a regular file or directory (a FIFO or device?); "
                           f"point dataset.path at a data file or a directory of sources")
    fmt = detect_format(path) if cfg.format == "auto" else cfg.format
    FORMATS.get(fmt)
    if path.is_dir() and fmt != "dir":
        raise DatasetError(f"{path} is a directory but dataset.format is '{fmt}'; use format 'dir' (or auto) "
                           f"for a directory of source files, or point dataset.path at a {fmt} file")
    if not path.is_dir() and fmt == "dir":
        raise DatasetError(f"format 'dir' needs a directory, but {path} is a file; set dataset.format to "
                           f"the file's format (or auto), or point dataset.path at the directory")
    return path, fmt


def check_dataset(cfg: DatasetConfig) -> None:
    """What `cgtrain validate` can tell without reading rows: the file exists, its format is known,
    a `dir` dataset has its labels file."""
    path, fmt = resolve(cfg)
    check_segments(cfg)
    if fmt == "dir":
        from cgtrain.data.formats import labels_path

        labels_path(path, cfg)

"""The sweep config checked against its schema, with a one-line error a user can act on.

Snakemake's `validate` reports a violation with the whole schema printed after it (a hundred lines for
a misspelt key). The same schema is checked here first, and the best-matching violation is told in one
line naming the config file and the key (and the nearest known key for a misspelling); only a config
that passes goes on to Snakemake's `validate`, which also fills in the schema's defaults.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cosmos_t2.errors import CosmosError

# The sweep read when no --configfile is given, relative to the working directory (the Snakemake
# workflow catalog's place for it).
DEFAULT_CONFIG = "config/config.yaml"


def config_error(config: Mapping[str, Any], schema: Mapping[str, Any]) -> tuple[str, str] | None:
    """(key, reason) of the violation jsonschema ranks most relevant, or None when `config` passes."""
    import jsonschema

    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(dict(config)))
    if error is None:
        return None
    key = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set(error.schema.get("properties", {}))
        unknown = sorted(k for k in error.instance if k not in known)
        if unknown:
            name = unknown[0]
            near = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else f"; known keys: {', '.join(sorted(known))}"
            return (f"{key}.{name}" if key else name), f"unknown key{hint}"
    return key or "(top level)", " ".join(error.message.split())


def validate_config(
    config: dict[str, Any], schema_file: str | Path, config_files: Sequence[str | Path] = ()
) -> None:
    """Check `config` against the schema (one CosmosError line naming file and key), then let Snakemake's
    `validate` fill in the defaults. `config_files`: the --configfile(s) the config came from."""
    import yaml
    from snakemake.utils import validate

    schema = yaml.safe_load(Path(schema_file).read_text(encoding="utf-8"))
    found = config_error(config, schema)
    if found is not None:
        key, reason = found
        where = ", ".join(map(str, config_files)) or DEFAULT_CONFIG
        raise CosmosError(f"{reason} (schema: {schema_file})", file=f"sweep config {where}", key=key)
    validate(config, str(schema_file))


def check_sweep_config(
    config: dict[str, Any], schema_file: str | Path, config_files: Sequence[str | Path] = ()
) -> None:
    """The Snakefile's edge: `validate_config`, with its error as one logged line and exit code 2 (an
    exception raised in a Snakefile is printed with a traceback)."""
    from snakemake.logging import logger

    try:
        validate_config(config, schema_file, config_files)
    except CosmosError as exc:
        logger.error(str(exc))
        raise SystemExit(2) from None

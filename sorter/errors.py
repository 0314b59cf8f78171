"""User-facing errors: each carries one clear line and the process exit code it maps to."""


class UserError(Exception):
    """A mistake in the user's input (paths, config, data, model). The CLI prints it as one line."""

    exit_code = 2


class ConfigError(UserError):
    """config.toml or a command-line override is invalid."""

    exit_code = 3


class ModelError(UserError):
    """A model file or model card is missing, malformed or does not match."""

    exit_code = 4


class StorageError(UserError):
    """The library's disk refused a write (full, read-only, I/O error). Nothing was lost: the journal
    lets the next run finish what this one started."""

    exit_code = 5

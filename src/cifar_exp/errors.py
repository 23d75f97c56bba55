"""Errors a user can cause and fix: they end a run with one clear message and exit code 1."""


class UserError(Exception):
    """A problem with the user's input (config, path, environment), not a bug in cifar-exp."""


class ConfigError(UserError):
    """A config value that cannot work, e.g. a negative batch size."""


class TrainingDiverged(UserError):
    """The loss became NaN or infinite, usually from too high a learning rate."""

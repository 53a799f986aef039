"""The one exception type a user sees as a one-line message (the CLI prints it without a traceback)."""


class VidiffError(Exception):
    """A problem with the user's input, config, files or run: the message says what and where."""


class ConfigError(VidiffError):
    """A config key, value or type that does not fit the dataclasses in `vidiff.config`."""


class CheckpointError(VidiffError):
    """A run folder, checkpoint or weights file that is missing, unsafe or does not match its config."""

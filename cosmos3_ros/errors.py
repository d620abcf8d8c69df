"""Exception types. Every message names the offending value and what was expected."""


class Cosmos3Error(Exception):
    """Base class: a request or configuration the package refuses, with a one-line reason."""


class CheckpointError(Cosmos3Error):
    """A checkpoint folder, file or tensor is missing, corrupt, or does not match what was asked."""


class ProfileError(Cosmos3Error):
    """A profile or setting contradicts itself or the checkpoint's own metadata."""


class InputError(Cosmos3Error):
    """An observation, task, action file or other request input is malformed."""


class OutputError(Cosmos3Error):
    """An output file or folder cannot be written (missing, read-only, a folder in the way, disk full)."""

"""The one exception type for failures a user can fix (bad config, missing or corrupt file)."""


class SslzooError(Exception):
    """A failure whose message names the file or config key and says how to fix it.

    The CLI prints it without a traceback and exits with status 2; anything else is a bug and
    keeps its traceback.
    """

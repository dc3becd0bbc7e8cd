class UserError(Exception):
    """Bad input from the user: shown as one line, exit code 2."""

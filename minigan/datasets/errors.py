"""The one error type of the data layer, and how its messages name a command to run."""


class DatasetError(ValueError):
    """Missing, malformed or unreadable data; the message is one line meant for the user."""


def command_line(words):
    """`words` as the user would type them: 'python cli.py ...' from a checkout, 'minigan ...'
    for the installed script (click's root command knows which one is running)."""
    import click
    ctx = click.get_current_context(silent=True)
    name = (ctx.find_root().info_name if ctx is not None else None) or "minigan"
    return f"{'python ' if name.endswith('.py') else ''}{name} {words}"

"""The command line: one click group, one subcommand per task."""
import click

from . import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="minigan")
def main():
    """minigan: train GANs on NumPy (CPU) or CuPy (GPU)."""


if __name__ == "__main__":
    main()

"""The command line: one click group; each subcommand lives in minigan/commands/."""
import click

from . import __version__, host
from .commands.download import download
from .commands.fid import fid_command
from .commands.generate import generate_command
from .commands.lightweight import lightweight_command
from .commands.pix2pix import pix2pix_command, translate_command
from .commands.projected import projected_command
from .commands.zoo import COMMANDS as ZOO_COMMANDS


@click.group("minigan", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="minigan")
def main():
    """minigan: train GANs on NumPy (CPU) or CuPy (GPU)."""
    host.keep_freed_memory()     # the step's big temporaries stay mapped between steps (host.py)


# the registry of subcommands: a GAN is added here, never through an if/elif chain
for command in (pix2pix_command, translate_command, *ZOO_COMMANDS, lightweight_command,
                projected_command, generate_command, fid_command, download):
    main.add_command(command)


if __name__ == "__main__":
    main()

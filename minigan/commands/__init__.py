"""The subcommands of `python cli.py`, one module per GAN or task, registered in minigan.cli."""

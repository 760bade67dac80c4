"""`python cli.py ...` from a checkout; the same commands as the installed `minigan` script."""
from minigan.cli import main

if __name__ == "__main__":
    main()

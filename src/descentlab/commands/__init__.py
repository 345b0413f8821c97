"""One module per ``descentlab`` subcommand: ``HELP``, ``add_arguments(parser)``, ``run(args) -> int``."""

"""One module per ``calcjax`` command: ``add_arguments(parser)`` and ``run(args) -> int``."""

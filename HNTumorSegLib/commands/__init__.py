"""One module per ``hntumorseg`` subcommand. Each exposes ``add_arguments(parser)`` and ``run(args) -> int``.

The parsers live beside the code that uses them so a subcommand is one file to read;
``HNTumorSegLib.cli`` only wires them together and turns :class:`InputError` into
one line and exit code 2.
"""

"""The commands of ``python main.py``, one module each, with one ``COMMAND`` record
(core/commands/command.py). Adding a command: its module, one line below, its tests.

A command module imports what its work needs inside its functions, so that building the
command line stays quick.
"""

from core.commands import (
    attack,
    evaluate,
    explain,
    export,
    gradcheck,
    predict,
    prune,
    quantize,
    serve,
    summary,
    sweep,
    train,
    visualize,
)

COMMANDS = [  # in the order of python main.py --help
    train.COMMAND,
    evaluate.COMMAND,
    predict.COMMAND,
    quantize.COMMAND,
    export.COMMAND,
    summary.COMMAND,
    prune.COMMAND,
    serve.COMMAND,
    gradcheck.COMMAND,
    sweep.COMMAND,
    explain.COMMAND,
    visualize.COMMAND,
    attack.COMMAND,
]

"""``python main.py gradcheck``: every layer's backward pass against finite differences."""

from core.commands.command import Command


def add_arguments(parser):
    """gradcheck takes no options."""


def run(args):
    from core.learn.gradcheck import gradient_report

    report = gradient_report()
    print(report.to_string(index=False))
    failed = int((~report["ok"]).sum())
    print(
        f"\n{len(report) - failed} of {len(report)} checks passed (relative error < 1e-7 in float64)"
    )
    return 1 if failed else 0


COMMAND = Command(
    "gradcheck",
    "check every layer's backward pass against finite differences",
    add_arguments,
    run,
    description="Check every layer kind's hand-written backward pass, residual blocks "
    "included, against centered finite differences in float64, on small random inputs. It prints one "
    "row per check with its relative error, and exits 1 if any is 1e-7 or more.",
)

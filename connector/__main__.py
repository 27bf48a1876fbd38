"""The `connector` command (`python -m connector` too).

A command's start is mostly imports (SQLAlchemy, pydantic, the tables), and what they build lives as long
as the process: the garbage collector is off while they run (~15 % of `connector resync`'s start) and
comes back once the command has what it needs (`cli.imports_done`, `runtime.settle_heap`).
"""

import gc


def run() -> None:
    gc.disable()
    from connector.cli import main

    main()


if __name__ == "__main__":
    run()

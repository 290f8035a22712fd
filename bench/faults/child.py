"""`python -m bench.faults.child NUWA-ARGS...`: the `nuwa` CLI with fault hooks, driven by environment variables.

- ``FAULT_KILL_AT_SAVE=N`` (with ``FAULT_KILL_FRACTION=F``): the N-th ``torch.save`` of this process
  writes the first fraction F of its bytes to the target (flushed to disk), then the process SIGKILLs
  itself: a kill in the middle of a checkpoint write, exactly.
- ``FAULT_OPTIMIZERS=PATH``: when the command returns, the state of every optimizer it stepped is
  saved to PATH (the final checkpoint holds the weights, not the optimizer state).
- ``FAULT_READY=PATH``: the file is created at the first optimizer step (training has begun), so a
  parent can time a kill from there.

Without these variables the module is exactly ``python -m nuwa``.
"""
from __future__ import annotations

import io
import os
import signal
import sys
from pathlib import Path

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

SAVES = 0


def kill_mid_write(at: int, fraction: float) -> None:
    save = torch.save

    def partial_save(obj, f, *args, **kwargs):
        global SAVES
        SAVES += 1
        if SAVES < at or not isinstance(f, (str, os.PathLike)):
            return save(obj, f, *args, **kwargs)
        buf = io.BytesIO()
        save(obj, buf, *args, **kwargs)
        data = buf.getvalue()
        with open(f, "wb") as fh:
            fh.write(data[: int(len(data) * fraction)])
            fh.flush()
            os.fsync(fh.fileno())
        os.kill(os.getpid(), signal.SIGKILL)

    torch.save = partial_save


def watch_optimizers(ready: str | None) -> list[torch.optim.Optimizer]:
    """Every optimizer the command creates, in creation order; ``ready`` is touched at the first step."""
    created: list[torch.optim.Optimizer] = []
    init = torch.optim.Optimizer.__init__

    def register(self, *args, **kwargs) -> None:
        init(self, *args, **kwargs)
        created.append(self)

    def first_step(optimizer, args, kwargs) -> None:
        if ready and not os.path.exists(ready):
            Path(ready).touch()

    torch.optim.Optimizer.__init__ = register
    register_optimizer_step_post_hook(first_step)
    return created


def main(argv: list[str]) -> int:
    from nuwa.commands.cli import main as nuwa_main

    if os.environ.get("FAULT_KILL_AT_SAVE"):
        kill_mid_write(int(os.environ["FAULT_KILL_AT_SAVE"]), float(os.environ.get("FAULT_KILL_FRACTION", "0.5")))
    optimizers = watch_optimizers(os.environ.get("FAULT_READY"))
    rc = nuwa_main(argv)
    if os.environ.get("FAULT_OPTIMIZERS") and rc == 0:
        torch.save([o.state_dict() for o in optimizers], os.environ["FAULT_OPTIMIZERS"])
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

# kdbench_tb.py
from torch.utils.tensorboard import SummaryWriter

from kdbench import hookimpl


class TensorBoardLogger:
    """Loss and learning-rate curves, dev accuracy and final metrics: one TensorBoard run per cell."""

    def __init__(self):
        self.root, self.writers = None, {}

    def writer(self, cell):
        if cell is None or self.root is None:     # a teacher trained outside any cell, or a Ray
            return None                           # worker (kdbench_configure runs on the driver)
        if cell.key not in self.writers:
            self.writers[cell.key] = SummaryWriter(str(self.root / cell.key))
        return self.writers[cell.key]

    @hookimpl
    def kdbench_configure(self, config):          # once per run, before any cell
        self.root = config.results_dir / "tb"

    @hookimpl
    def kdbench_train_step(self, cell, stage, step, total, epoch, loss, lr):
        if (w := self.writer(cell)) is not None:
            w.add_scalar(f"{stage}/loss", loss, step)
            w.add_scalar(f"{stage}/lr", lr, step)

    @hookimpl
    def kdbench_dev_eval(self, cell, stage, step, epoch, dev_accuracy):
        if (w := self.writer(cell)) is not None:
            w.add_scalar(f"{stage}/dev_accuracy", dev_accuracy, step)

    @hookimpl
    def kdbench_cell_finish(self, cell, result):  # on the driver, after the cell file is written
        if (w := self.writer(cell)) is not None:
            for name, value in result.get("metrics", {}).items():
                w.add_scalar(f"final/{name}", value, 0)
            w.close()
            del self.writers[cell.key]


tracker = TensorBoardLogger()
